"""Band-aware initialisation of a stem from weights made for another band set.

Each target band takes the stem kernel of the source band with the same name; failing that, of the source band
nearest in wavelength, if it is within ``max_nm``. The kernels are scaled by ``n_source / n_target`` so the
stem's response keeps its magnitude. The mapping is logged and returned; a band with no source band near enough
is an error, never a silent random initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

__all__ = ["BandMatch", "match_bands", "adapt_stem_weight"]


@dataclass(frozen=True)
class BandMatch:
    target: str
    source: str
    how: str          # "name" | "wavelength"
    distance_nm: float


def match_bands(source: list[tuple[str, float]], target: list[tuple[str, float]], max_nm: float = 60.0
                ) -> list[BandMatch]:
    """For each (name, wavelength) target band, the source band it takes its kernel from."""
    if not source:
        raise ValueError("the source weights describe no bands; cannot map a stem without band metadata")
    by_name = {name.lower(): (name, wl) for name, wl in source}
    matches = []
    for name, wl in target:
        if name.lower() in by_name:
            src, swl = by_name[name.lower()]
            matches.append(BandMatch(name, src, "name", abs(swl - wl)))
            continue
        src, swl = min(source, key=lambda s: abs(s[1] - wl))
        distance = abs(swl - wl)
        if distance > max_nm:
            raise ValueError(
                f"band {name} ({wl:.0f} nm) has no counterpart in the pretrained weights: the nearest band, {src}, "
                f"is {distance:.0f} nm away (limit {max_nm:.0f} nm). Pretrained bands: "
                f"{', '.join(f'{n} ({w:.0f} nm)' for n, w in source)}. Drop the band from the data (the `bands` key), "
                f"or train from scratch (no weights); from Python, load_backbone() takes a wider max_nm")
        matches.append(BandMatch(name, src, "wavelength", distance))
    return matches


def adapt_stem_weight(weight: torch.Tensor, source: list[tuple[str, float]], target: list[tuple[str, float]],
                      max_nm: float = 60.0) -> tuple[torch.Tensor, list[BandMatch]]:
    """A (O, C_target, k, k) stem weight from a (O, C_source, k, k) one; see the module docstring."""
    if weight.ndim != 4 or weight.shape[1] != len(source):
        raise ValueError(f"stem weight {tuple(weight.shape)} does not have one input channel per source band "
                         f"({len(source)}: {[n for n, _ in source]})")
    matches = match_bands(source, target, max_nm)
    index = [[n for n, _ in source].index(m.source) for m in matches]
    new = weight[:, index].clone() * (len(source) / len(target))
    for m in matches:
        how = "same name" if m.how == "name" else f"nearest wavelength, {m.distance_nm:.0f} nm away"
        log.info("stem: band %s <- pretrained %s (%s)", m.target, m.source, how)
    return new, matches
