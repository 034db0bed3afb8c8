"""Band-aware initialisation of a stem from weights made for another band set.

Each target band takes the stem kernel of the source band with the same name; failing that, of the source band
nearest in wavelength, if it is within ``max_nm``. The kernels are scaled by ``n_source / n_target`` so the
stem's response keeps its magnitude. The mapping is logged and returned. A band with no source band near enough
(an RGB checkpoint on multispectral data) is an error naming every such band, unless a policy says what to do:
``unmatched="mean"`` gives it the mean of the source kernels, ``"zero"`` a zero kernel (the band is ignored until
fine-tuning moves it); each such band is logged. Never a silent random initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

__all__ = ["BandMatch", "match_bands", "adapt_stem_weight", "UNMATCHED"]

UNMATCHED = ("error", "mean", "zero")
POLICY_HINT = ("give the weights a policy for bands without a counterpart, recorded in their weights.json as "
               "`unmatched`: import them again with `eossl import SOURCE --out DIR --unmatched mean` (the mean "
               "pretrained kernel) or --unmatched zero")


@dataclass(frozen=True)
class BandMatch:
    target: str
    source: str       # the source band ("" for a band set by the unmatched policy)
    how: str          # "name" | "wavelength" | "mean" | "zero"
    distance_nm: float


def match_bands(source: list[tuple[str, float]], target: list[tuple[str, float]], max_nm: float = 60.0,
                unmatched: str = "error") -> list[BandMatch]:
    """For each (name, wavelength) target band, the source band it takes its kernel from (see module doc)."""
    if not source:
        raise ValueError("the source weights describe no bands; cannot map a stem without band metadata")
    if unmatched not in UNMATCHED:
        raise ValueError(f"unmatched: {unmatched!r}; choose one of {', '.join(UNMATCHED)}")
    by_name = {name.lower(): (name, wl) for name, wl in source}
    matches, missing = [], []
    for name, wl in target:
        if name.lower() in by_name:
            src, swl = by_name[name.lower()]
            matches.append(BandMatch(name, src, "name", abs(swl - wl)))
            continue
        src, swl = min(source, key=lambda s: abs(s[1] - wl))
        distance = abs(swl - wl)
        if distance <= max_nm:
            matches.append(BandMatch(name, src, "wavelength", distance))
        elif unmatched == "error":
            missing.append(f"{name} ({wl:.0f} nm; nearest {src}, {distance:.0f} nm away)")
        else:
            matches.append(BandMatch(name, "", unmatched, distance))
    if missing:
        raise ValueError(
            f"{len(missing)} band(s) of the data have no counterpart in the pretrained weights within "
            f"{max_nm:.0f} nm: {', '.join(missing)}. Pretrained bands: "
            f"{', '.join(f'{n} ({w:.0f} nm)' for n, w in source)}. Drop them from the data (the `bands` key), "
            f"train from scratch (no weights), or {POLICY_HINT}")
    return matches


def adapt_stem_weight(weight: torch.Tensor, source: list[tuple[str, float]], target: list[tuple[str, float]],
                      max_nm: float = 60.0, unmatched: str = "error") -> tuple[torch.Tensor, list[BandMatch]]:
    """A (O, C_target, k, k) stem weight from a (O, C_source, k, k) one; see the module docstring."""
    if weight.ndim != 4 or weight.shape[1] != len(source):
        raise ValueError(f"stem weight {tuple(weight.shape)} does not have one input channel per source band "
                         f"({len(source)}: {[n for n, _ in source]})")
    matches = match_bands(source, target, max_nm, unmatched)
    names = [n for n, _ in source]
    kernels = []
    for m in matches:
        if m.how == "mean":
            kernels.append(weight.mean(dim=1))
        elif m.how == "zero":
            kernels.append(torch.zeros_like(weight[:, 0]))
        else:
            kernels.append(weight[:, names.index(m.source)])
    new = torch.stack(kernels, dim=1) * (len(source) / len(target))
    for m in matches:
        if m.how in ("mean", "zero"):
            log.warning("stem: band %s has no pretrained counterpart (nearest %.0f nm away): %s kernel (policy "
                        "unmatched: %s)", m.target, m.distance_nm, "the mean" if m.how == "mean" else "a zero",
                        m.how)
        else:
            how = "same name" if m.how == "name" else f"nearest wavelength, {m.distance_nm:.0f} nm away"
            log.info("stem: band %s <- pretrained %s (%s)", m.target, m.source, how)
    return new, matches
