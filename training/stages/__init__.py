"""The stages of a training run, in order (``training.train.train`` runs them):

1. :mod:`~training.stages.prepare`: the validation split, feature state, target
   scaling and label rule (fitted on the training rows, or a resumed checkpoint's),
   and the tensors of both sides;
2. :mod:`~training.stages.fit`: the training loop (early stopping, checkpoints
   written every epoch, the best one kept in memory);
3. :mod:`~training.stages.calibrate`: the quality probability calibrated and its
   threshold chosen on the validation rows, and the rows export needs stored.

Each stage hands the next a typed object; what goes into the checkpoint is a
part of :class:`training.checkpoint.Checkpoint`.
"""
