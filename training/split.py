"""Validation splits that keep related rows together.

Rows of one A/B test stay on one side, and so do identical titles (a headline
can appear in several tests), so validation never scores a headline the model
was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


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


def grouped_split(
    titles: Sequence[str], groups: Sequence[str] | None, val_fraction: float, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Shuffle components with ``seed`` and give about ``val_fraction`` of the rows to validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"expected val_fraction in (0, 1), got {val_fraction}")
    component = connected_groups(titles, groups)
    n_components = int(component.max()) + 1 if component.size else 0
    if n_components < 2:
        raise ValueError(f"expected at least 2 independent groups of rows to split, got {n_components}")
    order = np.random.default_rng(seed).permutation(n_components)
    sizes = np.bincount(component, minlength=n_components)[order]
    target = val_fraction * len(titles)
    n_val = max(1, min(n_components - 1, int(np.searchsorted(np.cumsum(sizes), target)) + 1))
    val_components = np.zeros(n_components, dtype=bool)
    val_components[order[:n_val]] = True
    is_val = val_components[component]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
