"""Pairwise accuracy within A/B groups: how the CTR head orders the headlines of one test.

Pure numpy functions with the validation conventions of :mod:`artifact.measures`
("expected X, got Y" ``ValueError``, no warnings, ``nan`` when nothing is comparable).
They live in ``artifact`` so that ``evaluate`` (training) and the stream's live quality
(:mod:`stream.quality`) compute pairwise accuracy with the same code; :mod:`training.pairwise`
re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from artifact.features import NO_CUT, normalize_title
from artifact.measures import FloatArray, as_float_array, check_same_length

#: |z| above this marks a pair of rows as significantly different (two-sided 5 %).
Z_CRITICAL = 1.96


def two_proportion_z(
    clicks_a: ArrayLike, imps_a: ArrayLike, clicks_b: ArrayLike, imps_b: ArrayLike
) -> FloatArray:
    """Pooled two-proportion z statistic of ``clicks_a/imps_a`` vs. ``clicks_b/imps_b``.

    Vectorised with numpy broadcasting. Requires ``imps > 0`` and
    ``0 <= clicks <= imps``; z is 0 where the pooled variance is 0 (both
    proportions 0 or both 1).
    """
    named = {"clicks_a": clicks_a, "imps_a": imps_a, "clicks_b": clicks_b, "imps_b": imps_b}
    arrays: dict[str, FloatArray] = {}
    for name, values in named.items():
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: expected numeric values, got {exc}") from exc
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: expected finite values, got NaN/inf")
        arrays[name] = arr
    try:
        ca, na, cb, nb = np.broadcast_arrays(*arrays.values())
    except ValueError as exc:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in arrays.items())
        raise ValueError(f"expected broadcastable shapes, got {shapes}") from exc
    _check_counts("clicks_a", ca, "imps_a", na)
    _check_counts("clicks_b", cb, "imps_b", nb)

    pooled = (ca + cb) / (na + nb)
    variance = pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)
    diff = ca / na - cb / nb
    z = np.zeros(variance.shape, dtype=np.float64)
    positive = variance > 0.0
    np.divide(diff, np.sqrt(variance, where=positive, out=np.zeros_like(variance)), out=z, where=positive)
    return z


def _check_counts(clicks_name: str, clicks: FloatArray, imps_name: str, imps: FloatArray) -> None:
    if np.any(imps <= 0.0):
        raise ValueError(f"{imps_name}: expected impressions > 0, got {float(imps[imps <= 0.0].flat[0])!r}")
    if np.any(clicks < 0.0):
        raise ValueError(f"{clicks_name}: expected clicks >= 0, got {float(clicks[clicks < 0.0].flat[0])!r}")
    over = clicks > imps
    if np.any(over):
        raise ValueError(
            f"{clicks_name}: expected clicks <= {imps_name}, "
            f"got {float(clicks[over].flat[0])!r} > {float(imps[over].flat[0])!r}"
        )


@dataclass(frozen=True, slots=True)
class PairwiseResult:
    """Within-group ordering accuracy (the A/B-test view of the CTR head)."""

    accuracy: float  # nan when no pair has different observed CTR
    pairs: int
    accuracy_significant: float  # nan when no significant pair or counts not given
    significant_pairs: int
    pooled_rows: int = 0  # rows merged into another row of the same headline and group (``titles``)


def _group_codes(groups: ArrayLike) -> NDArray[np.intp]:
    arr = np.asarray(groups)
    if arr.ndim != 1:
        raise ValueError(f"groups: expected a 1-D array of group ids, got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.any(np.isnan(arr)):
        raise ValueError("groups: expected group ids, got NaN")
    if arr.dtype.kind == "O":
        # Mixed or arbitrary hashable ids: factorize in Python (np.unique would need an ordering).
        index: dict[object, int] = {}
        codes = np.fromiter((index.setdefault(g, len(index)) for g in arr), dtype=np.intp, count=arr.size)
        return codes
    _, inverse = np.unique(arr, return_inverse=True)
    return np.asarray(inverse, dtype=np.intp).reshape(-1)


def _within_group_pairs(codes: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row indices ``(left, right)`` of every unordered pair of rows sharing a group code."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    n = sorted_codes.size
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], n]
    sizes = ends - starts
    group_end = np.repeat(ends, sizes)  # for each sorted position, one past its group's last position
    partners = group_end - np.arange(n) - 1  # later positions in the same group
    total = int(partners.sum())
    left_pos = np.repeat(np.arange(n), partners)
    # offset of each pair within its left row's block: 0, 1, ..., partners - 1
    block_start = np.repeat(np.cumsum(partners) - partners, partners)
    right_pos = left_pos + 1 + (np.arange(total) - block_start)
    return order[left_pos], order[right_pos]


def headline_key(title: str) -> str:
    """The form under which two titles count as one headline: ``normalize_title`` without its cut.

    NFKC, control characters to spaces, case-folded and whitespace collapsed, so
    whitespace and case variants of one headline are one headline. Titles are compared in
    full: two headlines that differ only after the featurizer's length cap are still two
    headlines to the readers of the A/B test.
    """
    return normalize_title(title, NO_CUT)


def headline_codes(
    group_codes: NDArray[np.intp], titles: ArrayLike, *, keyed: bool = False
) -> NDArray[np.intp]:
    """A code per row for its (group, :func:`headline_key`), numbered in order of first sighting.

    ``keyed``: ``titles`` are already headline keys, :func:`headline_key` values or integer codes
    standing for them (equal code, same headline), given by a caller that measures the same rows
    again and again (the stream's live quality) and normalizes each title once; integer codes are
    paired with the groups without a Python loop.
    """
    if keyed:
        return _keyed_codes(group_codes, titles)
    arr = np.asarray(titles, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"titles: expected a 1-D array of strings, got shape {arr.shape}")
    check_same_length(groups=group_codes, titles=arr)
    index: dict[tuple[int, str], int] = {}
    codes = np.empty(arr.size, dtype=np.intp)
    for i, (group, title) in enumerate(zip(group_codes.tolist(), arr.tolist(), strict=True)):
        if not isinstance(title, str):
            raise ValueError(f"titles: expected strings, got {type(title).__name__} at row {i}")
        codes[i] = index.setdefault((group, headline_key(title)), len(index))
    return codes


def _keyed_codes(group_codes: NDArray[np.intp], keys: ArrayLike) -> NDArray[np.intp]:
    arr = np.asarray(keys)
    if arr.ndim != 1:
        raise ValueError(f"headline_keys: expected a 1-D array, got shape {arr.shape}")
    check_same_length(groups=group_codes, headline_keys=arr)
    if arr.dtype.kind == "O":
        bad = next((k for k in arr.tolist() if not isinstance(k, str)), None)
        if bad is not None:
            raise ValueError(f"headline_keys: expected strings or integers, got {type(bad).__name__}")
        arr = arr.astype(str)
    if arr.dtype.kind not in "iuU":
        raise ValueError(f"headline_keys: expected strings or integers, got dtype {arr.dtype}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp)
    _, key_codes = np.unique(arr, return_inverse=True)
    key_codes = key_codes.reshape(-1).astype(np.int64)
    pair = group_codes.astype(np.int64) * (int(key_codes.max()) + 1) + key_codes
    _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    codes: NDArray[np.intp] = rank[inverse.reshape(-1)]
    return codes


def _pooled_mean(codes: NDArray[np.intp], n: int, values: FloatArray) -> FloatArray:
    """Mean of ``values`` per code; exactly the common value where all of a code's values are equal."""
    mean = np.bincount(codes, weights=values, minlength=n) / np.bincount(codes, minlength=n).astype(
        np.float64
    )
    low = np.full(n, np.inf)
    high = np.full(n, -np.inf)
    np.minimum.at(low, codes, values)
    np.maximum.at(high, codes, values)
    return np.where(low == high, low, mean)


@dataclass(frozen=True, slots=True)
class _Rows:
    """The rows pairs are formed between (packages, or headlines after pooling)."""

    groups: NDArray[np.intp]
    observed: FloatArray
    predicted: FloatArray
    counts: tuple[FloatArray, FloatArray] | None
    pooled_rows: int = 0


def _pool_by_headline(rows: _Rows, titles: ArrayLike, *, keyed: bool) -> _Rows:
    """One row per (group, headline): counts summed, observed CTR and prediction pooled."""
    codes = headline_codes(rows.groups, titles, keyed=keyed)
    n = int(codes.max()) + 1 if codes.size else 0
    groups = np.zeros(n, dtype=np.intp)
    groups[codes] = rows.groups
    predicted = _pooled_mean(codes, n, rows.predicted)
    counts: tuple[FloatArray, FloatArray] | None = None
    if rows.counts is not None:
        clicks = np.bincount(codes, weights=rows.counts[0], minlength=n).astype(np.float64)
        imps = np.bincount(codes, weights=rows.counts[1], minlength=n).astype(np.float64)
        counts = (clicks, imps)
        observed = clicks / imps
    else:
        observed = _pooled_mean(codes, n, rows.observed)
    return _Rows(groups, observed, predicted, counts, pooled_rows=rows.groups.size - n)


def pairwise_accuracy(
    groups: ArrayLike,
    observed_ctr: ArrayLike,
    predicted: ArrayLike,
    clicks: ArrayLike | None = None,
    impressions: ArrayLike | None = None,
    titles: ArrayLike | None = None,
    *,
    headline_keys: ArrayLike | None = None,
) -> PairwiseResult:
    """Share of same-group pairs whose predicted order matches the observed CTR order.

    Every unordered pair of rows with the same group id and different observed
    CTR counts once; a tie in ``predicted`` scores 0.5. With ``clicks`` and
    ``impressions`` the same accuracy is also reported over the pairs whose pooled
    two-proportion z-test has ``|z| > 1.96``. Fully vectorised: the cost is
    linear in the number of within-group pairs (sum of ``k (k - 1) / 2``).

    With ``titles`` the pairs are formed between *headlines*, not rows: rows of one
    group whose titles are the same headline (equal :func:`headline_key`: case,
    whitespace and Unicode-form variants are one headline; A/B packages that differ
    only in their image) are pooled first. A pooled headline's prediction is the mean
    of its rows' predictions; its observed CTR is its summed clicks over its summed
    impressions when counts are given (for every headline, so one-row headlines use
    their own ``clicks / impressions``), else the mean of its rows' ``observed_ctr``;
    the z-test uses the summed counts. ``PairwiseResult.pooled_rows`` counts the rows
    merged away (rows minus headlines). ``headline_keys`` (each row's :func:`headline_key`, or
    integer codes standing for the keys, computed once by a caller that measures the same rows
    repeatedly) pool exactly like ``titles`` without normalizing them again; give one or the other.
    """
    codes = _group_codes(groups)
    observed = as_float_array("observed_ctr", observed_ctr)
    pred = as_float_array("predicted", predicted)
    check_same_length(groups=codes, observed_ctr=observed, predicted=pred)
    if (clicks is None) != (impressions is None):
        raise ValueError(
            "expected clicks and impressions together or neither, got "
            f"clicks={'set' if clicks is not None else None}, "
            f"impressions={'set' if impressions is not None else None}"
        )
    counts: tuple[FloatArray, FloatArray] | None = None
    if clicks is not None and impressions is not None:
        c = as_float_array("clicks", clicks)
        m = as_float_array("impressions", impressions)
        check_same_length(groups=codes, clicks=c, impressions=m)
        _check_counts("clicks", c, "impressions", m)
        counts = (c, m)
    rows = _Rows(codes, observed, pred, counts)
    if titles is not None and headline_keys is not None:
        raise ValueError("expected titles or headline_keys, got both")
    if titles is not None:
        rows = _pool_by_headline(rows, titles, keyed=False)
    elif headline_keys is not None:
        rows = _pool_by_headline(rows, headline_keys, keyed=True)
    return _score_pairs(rows)


def _score_pairs(rows: _Rows) -> PairwiseResult:
    observed, pred = rows.observed, rows.predicted
    left, right = _within_group_pairs(rows.groups)
    observed_sign = np.sign(observed[left] - observed[right])
    comparable = observed_sign != 0.0
    left, right, observed_sign = left[comparable], right[comparable], observed_sign[comparable]
    predicted_sign = np.sign(pred[left] - pred[right])
    score = np.where(predicted_sign == 0.0, 0.5, (predicted_sign == observed_sign).astype(np.float64))

    n_pairs = int(score.size)
    accuracy = float(np.mean(score)) if n_pairs else float("nan")
    accuracy_significant = float("nan")
    n_significant = 0
    if rows.counts is not None:
        c, m = rows.counts
        z = two_proportion_z(c[left], m[left], c[right], m[right])
        significant = np.abs(z) > Z_CRITICAL
        n_significant = int(np.count_nonzero(significant))
        if n_significant:
            accuracy_significant = float(np.mean(score[significant]))
    return PairwiseResult(
        accuracy=accuracy,
        pairs=n_pairs,
        accuracy_significant=accuracy_significant,
        significant_pairs=n_significant,
        pooled_rows=rows.pooled_rows,
    )
