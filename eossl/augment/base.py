"""What every eossl augmentation shares: its own seeded generator and a declared value domain.

Kornia draws random parameters from torch's global generator; eossl ops draw every parameter (including the
per-sample "apply or not" gate) from ``self.generator``, a CPU ``torch.Generator``, and move the small parameter
tensors to the data's device. Re-seed with :meth:`SeededMixin.reseed` for reproducible views.

``domain`` says what values an op expects: ``"reflectance"`` (physical units, before normalisation),
``"standardized"`` (after per-band ``(x - mean) / std``) or ``"any"`` (geometric, band-agnostic).
"""

from __future__ import annotations

from typing import Literal

import torch

Domain = Literal["reflectance", "standardized", "any"]


def _seed_from_global() -> int:
    return int(torch.randint(0, 2**62, (1,)).item())


class SeededMixin:
    """Mixed into Kornia augmentation classes (before the Kornia base in the MRO)."""

    domain: Domain = "any"

    def _init_rng(self, seed: int | None) -> None:
        self.generator = torch.Generator().manual_seed(_seed_from_global() if seed is None else int(seed))
        # The op gates samples itself (params["gate"]) and does its work only on the gated rows, or with identity
        # parameters for the others; Kornia always sees p=1, so it never runs the op on the whole batch and then
        # blends applied and skipped rows (a full extra pass per op).
        self.p_apply, self.p = float(self.p), 1.0

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform draws on the CPU from this op's generator."""
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def forward_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        b, p = batch_shape[0], self.p_apply
        if p >= 1.0:
            gate = torch.ones(b, dtype=torch.bool)
        elif p <= 0.0:
            gate = torch.zeros(b, dtype=torch.bool)
        elif self.same_on_batch:
            gate = (torch.rand(1, generator=self.generator) < p).expand(b).clone()
        else:
            gate = torch.rand(b, generator=self.generator) < p
        params = self.generate_parameters(batch_shape)
        params["gate"] = gate
        params["batch_prob"] = torch.ones(b)
        params["forward_input_shape"] = torch.tensor(batch_shape, dtype=torch.long)
        return params


def gated_rows(params: dict[str, torch.Tensor], device) -> torch.Tensor:
    """Indices of the samples an op applies to."""
    return params["gate"].nonzero(as_tuple=True)[0].to(device)


def gate_view(params: dict[str, torch.Tensor], input: torch.Tensor) -> torch.Tensor:
    """The gate as a (B, 1, 1, 1) bool tensor on the input's device."""
    return params["gate"].to(input.device).view(-1, *([1] * (input.ndim - 1)))


def check_range(name: str, value: tuple[float, float], low: float | None = None) -> tuple[float, float]:
    lo, hi = float(value[0]), float(value[1])
    if lo > hi or (low is not None and lo < low):
        raise ValueError(f"{name}: expected (min, max) with min <= max" + (f" and min >= {low}" if low is not None
                                                                           else "") + f", got {value}")
    return lo, hi
