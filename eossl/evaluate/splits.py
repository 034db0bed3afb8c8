"""Spatial-block train/test splits and few-label training subsets for field-level evaluation.

Neighbouring fields share soil, management and often the very pixels of their chips; a random split would put
them on both sides and inflate scores (Roberts et al. 2017, Ecography, "Cross-validation strategies for data with
temporal, spatial, hierarchical, or phylogenetic structure"). Fields are grouped into square blocks of
``block_size_m`` on a grid anchored at the CRS origin (so a block does not depend on which fields are present),
and whole blocks go to the test side.

>>> train, test = spatial_block_split(series.centroids, 2000, test_fraction=0.3, seed=0, labels=series.labels)
>>> check_block_split(series.centroids, train, test, 2000)      # raises if a block is on both sides
>>> few = few_label_subset(train, series.labels, k=5, seed=0)    # 5 training fields per class
"""

from __future__ import annotations

import numpy as np
from rasterio.warp import transform_bounds

__all__ = ["block_ids", "spatial_block_split", "check_block_split", "few_label_subset", "window_block_split"]


def block_ids(centroids: np.ndarray, block_size_m: float) -> np.ndarray:
    """(N, 2) projected coordinates (metres) -> (N,) int64 block number (equal numbers = same block)."""
    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or centroids.shape[1] != 2:
        raise ValueError(f"centroids must be (N, 2) x, y in metres, got shape {centroids.shape}")
    if not np.isfinite(centroids).all():
        raise ValueError("centroids hold NaN or infinite values; use projected coordinates of the fields")
    if not block_size_m > 0:
        raise ValueError(f"block_size_m must be > 0, got {block_size_m}")
    cells = np.floor(centroids / float(block_size_m)).astype(np.int64)           # (N, 2) block column, row
    _, ids = np.unique(cells, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def spatial_block_split(centroids: np.ndarray | None, block_size_m: float | None, test_fraction: float = 0.3,
                        seed: int = 0, labels: np.ndarray | None = None,
                        blocks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_idx, test_idx) of the N fields; every block lies wholly on one side. ``blocks`` (N,) gives
    the blocks directly (any labels, e.g. H3 cells) instead of the grid of ``centroids`` and ``block_size_m``.

    Blocks are shuffled with ``np.random.default_rng(seed)`` and taken into the test side, in that order, when
    they bring the test side closer to ``test_fraction`` of every class (of all fields without ``labels``) than
    they push it past. Afterwards a class with every field in test gets its smallest test block back when
    another test block holds it too (stratification where feasible). Deterministic given the inputs and seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if blocks is not None:
        _, blocks = np.unique(np.asarray(blocks), return_inverse=True)
        blocks = blocks.reshape(-1).astype(np.int64)
    else:
        blocks = block_ids(centroids, block_size_m)
    n_blocks = int(blocks.max()) + 1 if blocks.size else 0
    if n_blocks < 2:
        size, fix = (("given block(s)", "give finer blocks") if block_size_m is None else
                     (f"block(s) of {block_size_m} m", "use a smaller block_size_m"))
        raise ValueError(f"the {blocks.size} samples fall in {n_blocks} {size}; a spatial split needs at least 2: "
                         f"{fix}")
    labels = np.zeros(blocks.size, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if labels.shape != blocks.shape:
        raise ValueError(f"labels must be (N,) = ({blocks.size},), got shape {labels.shape}")
    counts = np.zeros((n_blocks, int(labels.max()) + 1), dtype=np.int64)          # (blocks, classes)
    np.add.at(counts, (blocks, labels), 1)
    target = test_fraction * counts.sum(axis=0)
    in_test = np.zeros(n_blocks, dtype=bool)
    taken = np.zeros(counts.shape[1])
    for b in np.random.default_rng(seed).permutation(n_blocks):
        after = taken + counts[b]
        gain = np.minimum(after, target).sum() - np.minimum(taken, target).sum()
        overshoot = np.maximum(after - target, 0).sum() - np.maximum(taken - target, 0).sum()
        if gain > overshoot and in_test.sum() < n_blocks - 1:
            in_test[b] = True
            taken = after
    if not in_test.any():   # every block alone overshoots (very few, large blocks): take the smallest
        in_test[np.argmin(counts.sum(axis=1))] = True
    _return_missing_classes(counts, in_test)
    test = np.flatnonzero(in_test[blocks])
    return np.setdiff1d(np.arange(blocks.size), test), test


def _return_missing_classes(counts: np.ndarray, in_test: np.ndarray) -> None:
    """Move test blocks back to train (in place) for classes absent from train, keeping >= 1 test block."""
    for c in range(counts.shape[1]):
        holders = np.flatnonzero(in_test & (counts[:, c] > 0))
        if counts[~in_test, c].sum() > 0 or holders.size < 2:
            continue
        back = holders[np.argmin(counts[holders].sum(axis=1))]
        if in_test.sum() > 1:
            in_test[back] = False


def check_block_split(centroids: np.ndarray, train_idx, test_idx, block_size_m: float) -> dict:
    """Raise ValueError if the sides overlap or share a block; else return ``{"n_train", "n_test",
    "n_blocks_train", "n_blocks_test", "min_distance_m"}`` (smallest train-test centroid distance)."""
    train, test = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    both = np.intersect1d(train, test)
    if both.size:
        raise ValueError(f"fields {both[:10].tolist()} are in both train and test")
    if train.size == 0 or test.size == 0:
        raise ValueError(f"a split needs fields on both sides, got {train.size} train and {test.size} test")
    blocks = block_ids(centroids, block_size_m)
    shared = np.intersect1d(blocks[train], blocks[test])
    if shared.size:
        raise ValueError(f"{shared.size} block(s) of {block_size_m} m hold both train and test fields (e.g. "
                         f"train {train[np.isin(blocks[train], shared)][:5].tolist()}, test "
                         f"{test[np.isin(blocks[test], shared)][:5].tolist()}): the split leaks")
    from scipy.spatial import cKDTree  # nearest train field of every test field, without an N x M matrix

    xy = np.asarray(centroids, dtype=np.float64)
    d, _ = cKDTree(xy[train]).query(xy[test])
    return {"n_train": int(train.size), "n_test": int(test.size), "n_blocks_train": int(np.unique(blocks[train]).size),
            "n_blocks_test": int(np.unique(blocks[test]).size), "min_distance_m": float(d.min())}


def few_label_subset(train_idx, labels: np.ndarray, k: int | str | None, seed: int = 0,
                     classes: list[str] | None = None) -> np.ndarray:
    """Sorted ``k`` training fields per class drawn from ``train_idx`` with ``np.random.default_rng(seed)``.

    ``k`` None or ``"all"``: every training field. Every class present in ``labels`` (N,) needs ``k`` fields in
    ``train_idx``; ``classes`` (label -> name) names the class in the error.
    """
    train = np.sort(np.asarray(train_idx, dtype=np.int64))
    labels = np.asarray(labels)
    if k is None or k == "all":
        return train
    if isinstance(k, str) or isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, None or 'all', got {k!r}")
    values = np.unique(labels)
    members = [train[labels[train] == v] for v in values]
    short = [(classes[v] if classes is not None and 0 <= v < len(classes) else v, m.size)
             for v, m in zip(values, members) if m.size < k]
    if short:
        names = ", ".join(f"class {name!r} has {n}" for name, n in short)
        raise ValueError(f"too few training fields for k = {k} per class: {names}; lower k, use a smaller "
                         f"test_fraction or block size, or label more fields of those classes")
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(m, int(k), replace=False) for m in members]))


def window_block_split(bounds_list, block_size_m: float, test_fraction: float = 0.2, seed: int = 0,
                       crs: list[str] | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) window indices, sorted: whole square blocks of ``block_size_m`` (window centres) go to test.

    Windows in other CRSs than the first are moved into it first (it must be projected, in metres). Train
    windows that overlap a test window (stride < chip size) are dropped, so no pixel is in both sets.
    """
    b = np.asarray(bounds_list, dtype=np.float64).reshape(-1, 4)
    if block_size_m <= 0 or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"need block_size_m > 0 and 0 < test_fraction < 1, got {block_size_m}, {test_fraction}")
    crss = [crs] * len(b) if crs is None or isinstance(crs, str) else list(crs)
    if len(crss) != len(b):
        raise ValueError(f"{len(b)} windows but {len(crss)} CRSs")
    for i, c in enumerate(crss):
        if c is not None and c != crss[0]:
            b[i] = transform_bounds(c, crss[0], *b[i])
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    _, block = np.unique(np.floor(centre / block_size_m).astype(np.int64), axis=0, return_inverse=True)
    n_blocks = int(block.max()) + 1 if block.size else 0
    if n_blocks < 2:
        raise ValueError(f"the {len(b)} windows fall in {n_blocks} block(s) of {block_size_m:g} m: need at least 2 "
                         f"to split; use a smaller block_size_m")
    order = np.random.default_rng(seed).permutation(n_blocks)
    n_test = min(n_blocks - 1, max(1, round(test_fraction * n_blocks)))
    is_test = np.isin(block.ravel(), order[:n_test])
    test = np.flatnonzero(is_test)
    t = b[test]
    overlap = ((b[:, None, 0] < t[None, :, 2]) & (t[None, :, 0] < b[:, None, 2]) &
               (b[:, None, 1] < t[None, :, 3]) & (t[None, :, 1] < b[:, None, 3])).any(axis=1)
    return np.flatnonzero(~is_test & ~overlap), test
