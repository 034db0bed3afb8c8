"""Distributed helpers that degrade to identity without a process group.

``gather_with_grad`` concatenates a tensor from every rank along dim 0 and sends gradients back to their
owners: the backward pass sums the gradient of the gathered tensor over ranks (every rank computes the same loss
on a copy of the gathered batch) and returns this rank's slice.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_size", "rank", "gather_with_grad", "all_reduce_mean", "all_reduce_sum"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.batch = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start:start + ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each rank -> (world * B, ...), rank order; the input itself without a process group.

    Every rank must pass the same batch size. With DDP, which averages parameter gradients over ranks, a loss
    computed on the gathered batch gives each rank the full-batch gradient of its own samples summed over the
    ranks' identical losses; DDP's averaging then yields exactly the single-process gradient of that loss on the
    concatenated batch.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (no gradient); the input without a process group."""
    return all_reduce_sum(x) / dist.get_world_size() if is_distributed() else x


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (no gradient); the input without a process group."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y
