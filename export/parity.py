"""Parity between the PyTorch model and the runtime (ONNX + numpy) on the same rows.

Export scores the validation rows and :data:`HARD_ROWS` through both paths
and fails with :class:`ParityError` when the largest absolute difference in
normalized CTR or calibrated quality probability exceeds the tolerance.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

from artifact.errors import ParityError
from artifact.manifest import ParityResult

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-5
UNKNOWN_CATEGORY = "__category never seen in training__"

#: Hostile inputs every export is checked on: (title, category).
HARD_ROWS: tuple[tuple[str, str | None], ...] = (
    ("", None),
    ("   \t  ", UNKNOWN_CATEGORY),
    ("A very long headline " * 250, None),  # 5,250 characters, cut by the featurizer
    ("x" * 5000, UNKNOWN_CATEGORY),
    ("😀🔥 You won't believe this 👍🏽 👨‍👩‍👧", None),
    ('מדענים מצאו מים על מאדים: "פריצת דרך"', None),
    ("Apple השיקה iPhone חדש — 你好 мир مرحبا 2024!", UNKNOWN_CATEGORY),
    ("control\x00chars\x07and\x1b[31mescapes\x7f\u202eevil\u202c", None),
    ("ＦＵＬＬ ｗｉｄｔｈ １２３ ?!", ""),
    ("Why this matters?", UNKNOWN_CATEGORY),
)


def _max_abs(a: ArrayLike, b: ArrayLike) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ParityError(f"parity: expected outputs of the same shape, got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("inf")
    return float(np.max(np.abs(x - y)))


def compare(
    reference_ctr_normalized: ArrayLike,
    reference_quality_prob: ArrayLike,
    runtime_ctr_normalized: ArrayLike,
    runtime_quality_prob: ArrayLike,
    *,
    rows: int,
    hard_rows: int,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityResult:
    """Largest absolute differences; :class:`ParityError` above ``tolerance``."""
    ctr = _max_abs(reference_ctr_normalized, runtime_ctr_normalized)
    prob = _max_abs(reference_quality_prob, runtime_quality_prob)
    passed = ctr <= tolerance and prob <= tolerance
    result = ParityResult(
        rows=rows,
        hard_rows=hard_rows,
        max_abs_diff_ctr_normalized=ctr,
        max_abs_diff_quality_prob=prob,
        tolerance=tolerance,
        passed=passed,
    )
    if not passed:
        raise ParityError(
            f"parity failed on {rows} validation + {hard_rows} hard rows: max |torch - runtime| is "
            f"{ctr:.3g} on normalized CTR and {prob:.3g} on quality probability (tolerance {tolerance:.3g})"
        )
    logger.info(
        "parity: max diff %.3g (ctr_normalized), %.3g (quality_prob) on %d rows", ctr, prob, rows + hard_rows
    )
    return result
