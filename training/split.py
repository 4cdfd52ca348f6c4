"""Validation splits that keep related rows together.

Rows of one A/B test stay on one side, and so do identical titles (a headline
can appear in several tests), so validation never scores a headline the model
was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from artifact.errors import DataError


def connected_groups(titles: Sequence[str], groups: Sequence[str] | None) -> NDArray[np.int64]:
    """A component id per row: rows sharing a group or an (case-folded) title are connected."""
    n = len(titles)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def link(keys: Sequence[str]) -> None:
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            j = first.setdefault(key, i)
            if j != i:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[ri] = rj

    link([" ".join(t.casefold().split()) for t in titles])
    if groups is not None:
        link([str(g) for g in groups])
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    _, component = np.unique(roots, return_inverse=True)
    return component.astype(np.int64)


class NoValidationRowsError(DataError, ValueError):
    """Every group of rows is kept in training, so none can be drawn for validation."""


def grouped_split(
    titles: Sequence[str],
    groups: Sequence[str] | None,
    val_fraction: float,
    seed: int,
    trained: NDArray[np.bool_] | None = None,
    validated: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Shuffle components with ``seed`` and give about ``val_fraction`` of the rows to validation.

    For continuation training, ``trained`` and ``validated`` mark rows a resumed model trained
    and validated on: their components keep their side (training wins when a component holds
    both), and only the other components are shuffled, about ``val_fraction`` of their rows
    going to validation. The held-out rows then stay held out as the data grows. Without the
    marks the split is what it always was for a given seed.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"expected val_fraction in (0, 1), got {val_fraction}")
    component = connected_groups(titles, groups)
    n_components = int(component.max()) + 1 if component.size else 0
    if n_components < 2:
        raise ValueError(f"expected at least 2 independent groups of rows to split, got {n_components}")
    order = np.random.default_rng(seed).permutation(n_components)
    to_train = np.zeros(n_components, dtype=bool)
    to_val = np.zeros(n_components, dtype=bool)
    if trained is not None:
        to_train[component[trained]] = True
    if validated is not None:
        to_val[component[validated]] = True
    to_val &= ~to_train
    free = order[~(to_train | to_val)[order]]
    sizes = np.bincount(component, minlength=n_components)[free]
    # At least one component on each side: the forced ones count.
    least = 0 if to_val.any() else 1
    most = free.size if to_train.any() else free.size - 1
    if least > most:
        raise NoValidationRowsError("no group of rows is left for validation: every one is kept in training")
    n_val = max(least, min(most, int(np.searchsorted(np.cumsum(sizes), val_fraction * sizes.sum())) + 1))
    val_components = to_val.copy()
    val_components[free[:n_val]] = True
    is_val = val_components[component]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
