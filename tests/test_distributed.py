"""Distributed helpers: identity without a process group; gradient-correct gathers with two gloo CPU processes.

The DDP test spawns two processes once for all three losses. Each rank runs the same tiny seeded model wrapped in
DistributedDataParallel on its half of a fixed global batch (two views), computes a loss on gathered embeddings,
and writes its parameter gradients to a file; the parent compares them with the gradients of the same model on
the whole batch in one process.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from eossl import distributed as ed
from eossl.losses.clustering import sinkhorn
from eossl.losses.contrastive import info_nce, nt_xent_loss
from eossl.losses.distillation import dino_center, dino_loss
from eossl.losses.redundancy import barlow_twins_loss, vicreg_loss

WORLD = 2
LOCAL_B = 4
IN_DIM, OUT_DIM = 6, 4
TIMEOUT_S = 60  # upper bound for the whole two-process run (it normally takes a few seconds)


# ---------------------------------------------------------------------------------------------------------------
# Without a process group
# ---------------------------------------------------------------------------------------------------------------

def test_helpers_without_process_group():
    assert not dist.is_initialized()
    assert not ed.is_distributed()
    assert ed.world_size() == 1 and ed.rank() == 0
    x = torch.randn(3, 4, requires_grad=True)
    assert ed.gather_with_grad(x) is x
    y = torch.randn(5)
    assert ed.all_reduce_mean(y) is y


def test_gather_without_process_group_keeps_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    (ed.gather_with_grad(x) * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


# ---------------------------------------------------------------------------------------------------------------
# Two gloo processes
# ---------------------------------------------------------------------------------------------------------------

def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(IN_DIM, OUT_DIM).double()


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(WORLD * LOCAL_B, IN_DIM, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(WORLD * LOCAL_B, IN_DIM, generator=g, dtype=torch.float64)
    return x1, x2


LOSSES = ("barlow", "vicreg", "nt_xent", "info_nce", "dino")


def _distributed_loss(name: str, z1: torch.Tensor, z2: torch.Tensor, rank: int) -> torch.Tensor:
    if name == "barlow":
        return barlow_twins_loss(ed.gather_with_grad(z1), ed.gather_with_grad(z2))
    if name == "vicreg":
        return vicreg_loss(ed.gather_with_grad(z1), ed.gather_with_grad(z2))
    if name == "nt_xent":    # SimCLR: every rank scores the whole gathered batch
        return nt_xent_loss(ed.gather_with_grad(z1), ed.gather_with_grad(z2), temperature=0.2)
    if name == "dino":       # per-sample terms: each rank's mean over its own samples
        return dino_loss([z1.detach(), z2.detach()], [z1, z2], torch.zeros(1, OUT_DIM, dtype=z1.dtype), 0.5, 0.3)
    # contrastive: local queries against the keys of every rank; query i's positive is global key rank*B + i
    return info_nce(z1, ed.gather_with_grad(z2), temperature=0.2, positive_offset=rank * z1.shape[0])


def _single_process_loss(name: str, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    if name == "barlow":
        return barlow_twins_loss(z1, z2)
    if name == "vicreg":
        return vicreg_loss(z1, z2)
    if name == "nt_xent":
        return nt_xent_loss(z1, z2, temperature=0.2)
    if name == "dino":
        return dino_loss([z1.detach(), z2.detach()], [z1, z2], torch.zeros(1, OUT_DIM, dtype=z1.dtype), 0.5, 0.3)
    return info_nce(z1, z2, temperature=0.2)  # mean over all queries, all keys


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=30))
    try:
        result: dict[str, object] = {"rank": ed.rank(), "world": ed.world_size(), "is_dist": ed.is_distributed()}
        # all_reduce_mean: rank r contributes r + 1 -> mean 1.5; no gradient path
        t = torch.full((3,), float(rank + 1), dtype=torch.float64, requires_grad=True)
        m = ed.all_reduce_mean(t)
        result["mean"] = m.detach()
        result["mean_requires_grad"] = m.requires_grad
        result["mean_input_untouched"] = bool(torch.all(t == rank + 1))

        # bare gather: forward = concatenation in rank order; backward = this rank's slice of the gradient,
        # summed over the ranks' (identical) losses
        x = torch.arange(6, dtype=torch.float64).reshape(2, 3).add(100 * rank).requires_grad_()
        w = torch.arange(12, dtype=torch.float64).reshape(4, 3)
        y = ed.gather_with_grad(x)
        (y * w).sum().backward()
        result["bare_gather"] = y.detach()
        result["bare_grad"] = x.grad

        x1, x2 = _global_batch()
        sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        # DINO's centre: this rank's teacher outputs, averaged over the ranks inside dino_center
        result["dino_center"] = dino_center(torch.ones(1, IN_DIM, dtype=torch.float64), [x1[sl], x2[sl]], 0.9)
        # SwAV's codes: Sinkhorn over the batch of both ranks
        result["sinkhorn"] = sinkhorn(torch.nn.functional.normalize(x1[sl], dim=1), epsilon=0.1, iterations=3)
        ddp = torch.nn.parallel.DistributedDataParallel(_model())
        for name in LOSSES:
            ddp.zero_grad(set_to_none=True)
            z = ddp(torch.cat([x1[sl], x2[sl]]))  # one forward for both views
            z1, z2 = z[:LOCAL_B], z[LOCAL_B:]
            loss = _distributed_loss(name, z1, z2, rank)
            loss.backward()
            result[name] = {
                "loss": loss.detach(),
                "grads": {k: p.grad.detach().clone() for k, p in ddp.module.named_parameters()},
                "gathered_z1": ed.gather_with_grad(z1.detach()),
                "gathered_z2": ed.gather_with_grad(z2.detach()),
            }
        tmp = Path(out_dir) / f"rank{rank}.pt.tmp"
        torch.save(result, tmp)
        tmp.rename(tmp.with_suffix(""))  # the result file exists only once it is whole
        dist.barrier()  # neither rank closes its sockets while the other still reads (gloo aborts on a reset pair)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(out_dir: Path) -> None:
    ctx = mp.start_processes(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):  # raises ProcessRaisedException if a rank fails
            if time.monotonic() > deadline:
                pytest.fail(f"two-rank gloo run did not finish within {TIMEOUT_S} s")
    except mp.ProcessExitedException as e:
        # gloo's tcp pairs can abort a process while the group is torn down (pytorch/gloo#168, a rare
        # destruction-time race). A rank killed by a signal after it wrote its whole result file has finished every
        # collective the tests check; anything earlier is a failure.
        if not all((out_dir / f"rank{r}.pt").exists() for r in range(WORLD)):
            raise
        warnings.warn(f"a gloo rank aborted during teardown after writing its results: {e}", stacklevel=1)
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    _run_two_ranks(out)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_dino_centre_update_across_ranks_equals_one_process_on_the_whole_batch(two_rank_results):
    x1, x2 = _global_batch()
    expected = dino_center(torch.ones(1, IN_DIM, dtype=torch.float64), [x1, x2], 0.9)
    for res in two_rank_results:
        torch.testing.assert_close(res["dino_center"], expected, rtol=1e-12, atol=1e-12)


def test_sinkhorn_across_ranks_equals_one_process_on_the_whole_batch(two_rank_results):
    x1, _ = _global_batch()
    expected = sinkhorn(torch.nn.functional.normalize(x1, dim=1), epsilon=0.1, iterations=3)
    for r, res in enumerate(two_rank_results):
        torch.testing.assert_close(res["sinkhorn"], expected[r * LOCAL_B:(r + 1) * LOCAL_B], rtol=1e-10, atol=1e-12)
    single_rank = sinkhorn(torch.nn.functional.normalize(x1[:LOCAL_B], dim=1), epsilon=0.1, iterations=3)
    assert not torch.allclose(two_rank_results[0]["sinkhorn"], single_rank), "the other rank's samples count"


def test_rank_helpers_and_all_reduce_mean(two_rank_results):
    for r, res in enumerate(two_rank_results):
        assert res["rank"] == r and res["world"] == WORLD and res["is_dist"]
        torch.testing.assert_close(res["mean"], torch.full((3,), 1.5, dtype=torch.float64))
        assert not res["mean_requires_grad"]
        assert res["mean_input_untouched"]


def test_bare_gather_concatenates_in_rank_order_and_routes_gradients(two_rank_results):
    expected = torch.cat([torch.arange(6, dtype=torch.float64).reshape(2, 3) + 100 * r for r in range(WORLD)])
    w = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    for r, res in enumerate(two_rank_results):
        assert torch.equal(res["bare_gather"], expected)
        # every rank computed the same loss sum(y * w): the gradient of rank r's rows summed over the 2 ranks
        torch.testing.assert_close(res["bare_grad"], WORLD * w[2 * r:2 * r + 2])


@pytest.mark.parametrize("name", LOSSES)
def test_ddp_gradients_equal_single_process_on_full_batch(two_rank_results, name):
    x1, x2 = _global_batch()
    model = _model()
    z1, z2 = model(x1), model(x2)
    loss = _single_process_loss(name, z1, z2)
    loss.backward()
    expected = {k: p.grad for k, p in model.named_parameters()}

    z1, z2 = z1.detach(), z2.detach()
    for res in two_rank_results:
        got = res[name]
        # the gathered tensors are the whole batch in rank order
        torch.testing.assert_close(got["gathered_z1"], z1, rtol=0, atol=1e-12)
        torch.testing.assert_close(got["gathered_z2"], z2, rtol=0, atol=1e-12)
        for k, g in expected.items():
            torch.testing.assert_close(got["grads"][k], g, rtol=1e-5, atol=1e-5, msg=f"{name}: grad of {k}")
    if name not in ("info_nce", "dino"):  # barlow / vicreg / nt_xent: every rank computes the full-batch loss
        for res in two_rank_results:
            torch.testing.assert_close(res[name]["loss"], loss.detach(), rtol=1e-10, atol=1e-12)
    else:  # info_nce / dino: each rank holds the mean over its own samples; their mean is the full-batch loss
        mean = sum(res[name]["loss"] for res in two_rank_results) / WORLD
        torch.testing.assert_close(mean, loss.detach(), rtol=1e-10, atol=1e-12)
