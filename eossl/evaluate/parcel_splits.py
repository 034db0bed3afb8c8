"""Few-label splits of a labelled stack scored across parcels (issue 25, point 4).

Parcels: 8-connected regions of one label of at least ``min_pixels`` pixels
(:func:`eossl.data.labelled.parcels.find_parcels`); fragments (id -1) are neither trained on nor scored.

* a class with several parcels (multi-parcel): per seed one of its parcels is held out as the test parcel
  (leave-one-parcel-out per class): seed ``i`` tests ``order[i % n]`` of the class's ``n`` parcels, ``order`` a
  permutation drawn once from the base seed; ``k`` training pixels are drawn at random from its other parcels;
* a class with one parcel (single-parcel): ``k`` training pixels from that parcel; it is scored only within its
  parcel, on the pixels that are neither training pixels nor within ``buffer`` px of one, reported apart;
* no training pixel lies in or within ``buffer`` px (8-connected) of any test parcel of the seed;
* the training pixels of one seed and class are the first ``k`` of one seeded permutation of the eligible
  pixels, so a larger ``k`` adds pixels to a smaller one's; a class with fewer than ``k`` eligible pixels
  uses them all and is listed in ``short``.

Pixels are flat row-major indices of the (H, W) grid: the order of
:func:`eossl.data.series.stack_samples.stack_samples` for every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from eossl.data.labelled.parcels import EIGHT_CONNECTED, Parcels, buffer_mask

__all__ = ["ParcelSplit", "parcel_splits", "class_kinds"]


@dataclass
class ParcelSplit:
    """One seed and k of one stack. ``train`` (M,) pixels and ``train_labels`` (M,) their class codes; ``test``
    (N,) the pixels of the test parcels (multi-parcel classes), ``test_parcels`` (N,) their parcel ids;
    ``single`` (S,) the scored pixels of the single-parcel classes, ``single_parcels`` (S,) their parcel ids;
    ``short``: class code -> eligible pixels, for classes with fewer than ``k``."""

    seed: int
    k: str
    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_parcels: np.ndarray
    single: np.ndarray
    single_parcels: np.ndarray
    short: dict[int, int] = field(default_factory=dict)


def class_kinds(parcels: Parcels) -> tuple[list[int], list[int]]:
    """(multi-parcel class codes, single-parcel class codes), sorted."""
    per = parcels.per_class()
    return sorted(c for c, n in per.items() if n > 1), sorted(c for c, n in per.items() if n == 1)


def _test_parcels(parcels: Parcels, multi: list[int], seeds: list[int], base_seed: int) -> dict[int, list[int]]:
    """Class code -> the test parcel of each seed (cycling through a seeded permutation of its parcels)."""
    rng = np.random.default_rng([base_seed, 25])
    out = {}
    for code in multi:
        order = rng.permutation(parcels.of_class(code))
        out[code] = [int(order[i % len(order)]) for i in range(len(seeds))]
    return out


def _draw(pool: np.ndarray, n: int | None, rng) -> np.ndarray:
    """The first ``n`` (None: all) of a seeded permutation of ``pool``."""
    order = rng.permutation(pool)
    return order if n is None else order[:n]


def parcel_splits(parcels: Parcels, ks, seeds: int, seed: int = 0, buffer: int = 2) -> list[ParcelSplit]:
    """The splits of every seed (``seed`` .. ``seed + seeds - 1``) and k (an int or "all"), seed-major."""
    ids = parcels.ids
    multi, single = class_kinds(parcels)
    if not multi:
        raise ValueError(f"no class has two or more parcels of at least {parcels.min_pixels} px (parcels per class: "
                         f"{parcels.per_class()}): nothing can be scored across parcels; label more fields or lower "
                         f"min_parcel_pixels")
    seed_list = list(range(seed, seed + seeds))
    tests = _test_parcels(parcels, multi, seed_list, seed)
    flat_ids = ids.ravel()
    code_of = np.concatenate([[0], parcels.codes])                  # parcel id -> code (index 0: none)
    pixel_code = np.where(flat_ids > 0, code_of[np.maximum(flat_ids, 0)], 0)
    out = []
    for i, sd in enumerate(seed_list):
        test_ids = [tests[c][i] for c in multi]
        near_test = buffer_mask(ids, test_ids, buffer).ravel()
        eligible = (flat_ids > 0) & ~near_test
        test = np.flatnonzero(np.isin(flat_ids, test_ids))
        orders = {c: _draw(np.flatnonzero(eligible & (pixel_code == c)), None, np.random.default_rng([sd, c]))
                  for c in multi + single}
        for k in ks:
            n = None if k == "all" else int(k)
            train = {c: order[:n] if n is not None else order for c, order in orders.items()}
            short = {c: len(orders[c]) for c in orders if n is not None and len(orders[c]) < n}
            out.append(_split(sd, str(k), train, test, flat_ids, single, parcels, buffer, short))
    return out


def _split(sd: int, k: str, train: dict, test: np.ndarray, flat_ids: np.ndarray, single: list[int],
           parcels: Parcels, buffer: int, short: dict) -> ParcelSplit:
    pixels = np.concatenate([train[c] for c in sorted(train)]).astype(np.int64)
    labels = np.concatenate([np.full(len(train[c]), c) for c in sorted(train)]).astype(np.int64)
    near_train = np.zeros(parcels.ids.size, bool)
    near_train[pixels] = True
    if buffer > 0:
        near_train = ndimage.binary_dilation(near_train.reshape(parcels.ids.shape), structure=EIGHT_CONNECTED,
                                             iterations=buffer).ravel()
    single_ids = [parcels.of_class(c)[0] for c in single]
    scored = np.flatnonzero(np.isin(flat_ids, single_ids) & ~near_train)
    return ParcelSplit(seed=sd, k=k, train=pixels, train_labels=labels, test=test.astype(np.int64),
                       test_parcels=flat_ids[test].astype(np.int64), single=scored,
                       single_parcels=flat_ids[scored].astype(np.int64), short=short)
