"""Targets and loss of the classic pretext tasks: rotation prediction and jigsaw puzzles (pure functions).

Rotation: Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations", ICLR 2018.
Jigsaw: Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles", ECCV 2016;
here the shuffled tiles stay one image of the input's size, so every backbone (ResNet or ViT) and band count takes it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["rotations", "jigsaw_permutations", "shuffle_tiles", "pretext_loss"]


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, S, S) -> every chip in its four 90-degree rotations, (4B, C, S, S), and their labels (4B,): k for
    ``torch.rot90(chip, k, dims=(-2, -1))`` (k quarter turns counter-clockwise), all of k = 0 first, then 1, 2, 3."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation prediction needs square chips (B, C, S, S), got {tuple(x.shape)}")
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
    return torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]), labels


def jigsaw_permutations(n: int, grid: int = 3, seed: int = 0, pool: int = 5000) -> torch.Tensor:
    """``n`` distinct orders of ``grid * grid`` tiles, (n, grid^2) int64: from ``pool`` seeded random permutations,
    picked greedily so that each new one is as far as possible (Hamming distance) from those already picked, as
    Noroozi & Favaro chose theirs; the same ``seed`` gives the same set."""
    tiles = grid * grid
    if grid < 2 or n < 2 or n > math.factorial(tiles):
        raise ValueError(f"need grid >= 2 and 2 <= n <= {tiles}! permutations, got grid {grid}, n {n}")
    rng = np.random.default_rng(seed)
    cands = np.unique(np.stack([rng.permutation(tiles) for _ in range(max(pool, 4 * n))]), axis=0)
    rng.shuffle(cands)
    if len(cands) < n:
        raise ValueError(f"only {len(cands)} distinct permutations of {tiles} tiles were drawn; lower n")
    chosen = [0]
    dist = (cands != cands[0]).sum(1)                 # Hamming distance of every candidate to the chosen set
    for _ in range(n - 1):
        best = int(dist.argmax())
        chosen.append(best)
        dist = np.minimum(dist, (cands != cands[best]).sum(1))
    return torch.as_tensor(cands[chosen], dtype=torch.long)


def shuffle_tiles(x: torch.Tensor, permutations: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> the same chips with their ``grid x grid`` tiles reordered: tile t (row-major) of chip b is
    tile ``permutations[index[b], t]`` of the input. Tiles are ``H // grid`` x ``W // grid`` px from the top-left
    corner; pixels beyond them (when the size is not a multiple of the grid) stay where they are."""
    tiles = permutations.shape[1]
    grid = math.isqrt(tiles)
    if grid * grid != tiles or x.ndim != 4 or index.shape != (x.shape[0],):
        raise ValueError(f"need (B, C, H, W) chips, (P, g^2) permutations and (B,) indices; got {tuple(x.shape)}, "
                         f"{tuple(permutations.shape)}, {tuple(index.shape)}")
    b, c, h, w = x.shape
    th, tw = h // grid, w // grid
    if th < 1 or tw < 1:
        raise ValueError(f"chips of {h}x{w} px are too small for a {grid}x{grid} jigsaw")
    inner = x[:, :, :grid * th, :grid * tw].reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5)
    inner = inner.reshape(b, tiles, c, th, tw)
    order = permutations.to(x.device)[index]                                   # (B, g^2): source tile of each slot
    moved = inner[torch.arange(b, device=x.device)[:, None], order]            # (B, g^2, C, th, tw)
    moved = moved.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, grid * th, grid * tw)
    out = x.clone()
    out[:, :, :grid * th, :grid * tw] = moved
    return out


def pretext_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N, K) logits against (N,) class labels (the rotation or the permutation), in float32."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)
