"""Losses against independent references written as plain loops in float64 (STYLE.md pattern 1).

Every reference below walks samples / dimensions / pixels one at a time with Python floats and ``math``; it
shares no code with ``eossl.losses`` (no ``F.normalize``, no ``cross_entropy``, no ``patchify``).
"""

from __future__ import annotations

import math

import pytest
import torch

from eossl.losses.clustering import sinkhorn, swav_loss
from eossl.losses.contrastive import (
    byol_loss,
    info_nce,
    moco_v3_loss,
    negative_cosine,
    nt_xent_loss,
    simsiam_loss,
)
from eossl.losses.distillation import dino_center, dino_loss
from eossl.losses.masked import mae_loss, masked_series_loss, patchify
from eossl.losses.predictive import jepa_blocks, jepa_loss
from eossl.losses.pretext import jigsaw_permutations, pretext_loss, rotations, shuffle_tiles
from eossl.losses.redundancy import barlow_twins_loss, vicreg_loss, vicreg_terms

TOL = dict(rel=1e-9, abs=1e-10)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------------
# Plain-loop references (lists of lists of Python floats)
# ---------------------------------------------------------------------------------------------------------------

def _rows(x: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in x]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _unit(a: list[float]) -> list[float]:
    n = math.sqrt(_dot(a, a))
    return [x / n for x in a]


def ref_negative_cosine(p: torch.Tensor, z: torch.Tensor) -> float:
    p, z = _rows(p), _rows(z)
    total = 0.0
    for pi, zi in zip(p, z):
        total += -_dot(pi, zi) / (math.sqrt(_dot(pi, pi)) * math.sqrt(_dot(zi, zi)))
    return total / len(p)


def ref_info_nce(q: torch.Tensor, k: torch.Tensor, t: float, offset: int = 0) -> float:
    """-1/B sum_i log( exp(s_i,i+off / T) / sum_j exp(s_ij / T) ) with cosine similarities s."""
    q = [_unit(r) for r in _rows(q)]
    k = [_unit(r) for r in _rows(k)]
    total = 0.0
    for i, qi in enumerate(q):
        denom = sum(math.exp(_dot(qi, kj) / t) for kj in k)
        total += -math.log(math.exp(_dot(qi, k[i + offset]) / t) / denom)
    return total / len(q)


def ref_info_nce_queue(q: torch.Tensor, k: torch.Tensor, neg: torch.Tensor, t: float) -> float:
    q = [_unit(r) for r in _rows(q)]
    k = [_unit(r) for r in _rows(k)]
    neg = [_unit(r) for r in _rows(neg)]
    total = 0.0
    for qi, ki in zip(q, k):
        pos = math.exp(_dot(qi, ki) / t)
        denom = pos + sum(math.exp(_dot(qi, n) / t) for n in neg)
        total += -math.log(pos / denom)
    return total / len(q)


def _standardise_biased(z: list[list[float]], eps: float) -> list[list[float]]:
    n, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        col = [z[b][j] for b in range(n)]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / n
        for b in range(n):
            out[b][j] = (col[b] - mean) / math.sqrt(var + eps)
    return out


def ref_barlow(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> float:
    a = _standardise_biased(_rows(z1), eps)
    b = _standardise_biased(_rows(z2), eps)
    n, d = len(a), len(a[0])
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[s][i] * b[s][j] for s in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lambd * c_ij ** 2
    return loss


def ref_vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4
                     ) -> dict[str, float]:
    """VICReg, Bardes et al. 2022, eqs. (1)-(4): MSE invariance, hinge on the unbiased std, off-diag cov^2 / d."""
    x, y = _rows(z1), _rows(z2)
    n, d = len(x), len(x[0])
    inv = sum((x[b][j] - y[b][j]) ** 2 for b in range(n) for j in range(d)) / (n * d)
    var = cov = 0.0
    for z in (x, y):
        means = [sum(z[b][j] for b in range(n)) / n for j in range(d)]
        for j in range(d):
            v = sum((z[b][j] - means[j]) ** 2 for b in range(n)) / (n - 1)
            var += max(0.0, gamma - math.sqrt(v + eps)) / d / 2
        for i in range(d):
            for j in range(d):
                if i != j:
                    c = sum((z[b][i] - means[i]) * (z[b][j] - means[j]) for b in range(n)) / (n - 1)
                    cov += c ** 2 / d
    return {"invariance": inv, "variance": var, "covariance": cov}


def ref_vicreg(z1, z2, sim=25.0, std=25.0, cov=1.0) -> float:
    t = ref_vicreg_terms(z1, z2)
    return sim * t["invariance"] + std * t["variance"] + cov * t["covariance"]


def ref_patch_values(images: torch.Tensor, b: int, patch_index: int, p: int) -> list[tuple[int, int, int]]:
    """Pixel coordinates (c, y, x) of one patch in the MAE order: row in patch, column in patch, then channel."""
    _, c, h, w = images.shape
    per_row = w // p
    pi, pj = divmod(patch_index, per_row)
    return [(ch, pi * p + r, pj * p + s) for r in range(p) for s in range(p) for ch in range(c)]


def ref_mae(pred, images, mask, p, valid=None, norm_pix=True, eps=1e-6) -> float:
    bsz, c, h, w = images.shape
    n_patches = (h // p) * (w // p)
    num = den = 0.0
    for b in range(bsz):
        for li in range(n_patches):
            coords = ref_patch_values(images, b, li, p)
            vals = [float(images[b, ch, y, x]) for ch, y, x in coords]
            ok = [1.0 if valid is None or bool(valid[b, y, x]) else 0.0 for ch, y, x in coords]
            if norm_pix:
                cnt = sum(ok)
                mean = sum(v * o for v, o in zip(vals, ok)) / max(cnt, 1.0)
                var = sum((v - mean) ** 2 * o for v, o in zip(vals, ok)) / max(cnt - 1, 1.0)
                vals = [(v - mean) / math.sqrt(var + eps) for v in vals]
            if not bool(mask[b, li]):
                continue
            for k, (v, o) in enumerate(zip(vals, ok)):
                num += o * (float(pred[b, li, k]) - v) ** 2
                den += o
    return num / den


# ---------------------------------------------------------------------------------------------------------------
# negative_cosine / simsiam
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b,d", [(4, 3), (5, 5), (1, 4)])
def test_negative_cosine_matches_loop(b, d):
    p, z = _randn(b, d, seed=1), _randn(b, d, seed=2)
    assert negative_cosine(p, z).item() == pytest.approx(ref_negative_cosine(p, z), **TOL)


def test_simsiam_matches_loop_and_is_symmetric():
    p1, p2, z1, z2 = (_randn(5, 4, seed=s) for s in range(10, 14))
    expected = 0.5 * (ref_negative_cosine(p1, z2) + ref_negative_cosine(p2, z1))
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected, **TOL)
    # swapping the two views (p1, z1) <-> (p2, z2)
    assert simsiam_loss(p2, p1, z2, z1).item() == pytest.approx(simsiam_loss(p1, p2, z1, z2).item(), **TOL)


def test_simsiam_identical_views_is_minus_one_and_scale_invariant():
    z = _randn(4, 3, seed=3)
    assert simsiam_loss(z, z, z, z).item() == pytest.approx(-1.0, **TOL)
    assert simsiam_loss(2 * z, 3 * z, z, 0.5 * z).item() == pytest.approx(-1.0, **TOL)
    assert simsiam_loss(z, z, -z, -z).item() == pytest.approx(1.0, **TOL)


def test_negative_cosine_stops_gradient_to_z():
    p = _randn(4, 3, seed=4).requires_grad_()
    z = _randn(4, 3, seed=5).requires_grad_()
    negative_cosine(p, z).backward()
    assert z.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_simsiam_gradients_reach_predictions_only():
    p1, p2, z1, z2 = (_randn(4, 3, seed=s).requires_grad_() for s in range(20, 24))
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


@pytest.mark.parametrize("shapes", [((4, 3), (4, 4)), ((4, 3), (5, 3)), ((4,), (4,)), ((2, 4, 3), (2, 4, 3)),
                                    ((0, 3), (0, 3))])
def test_negative_cosine_bad_shapes(shapes):
    a, b = torch.randn(*shapes[0]), torch.randn(*shapes[1])
    with pytest.raises(ValueError):
        negative_cosine(a, b)
    with pytest.raises(ValueError):
        simsiam_loss(a, a, b, b)


@pytest.mark.parametrize("b,d", [(1, 3), (2, 4), (6, 13)])
def test_byol_is_the_papers_normalised_mse_summed_over_both_directions(b, d):
    """BYOL (Grill et al., eq. 2): ``||p/|p| - z'/|z'|||^2`` per sample, mean over the batch, ``L + L~``."""
    p1, p2, z1, z2 = (_randn(b, d, seed=s) for s in range(90, 94))

    def ref(p, z):
        total = 0.0
        for pi, zi in zip(_rows(p), _rows(z)):
            total += sum((x - y) ** 2 for x, y in zip(_unit(pi), _unit(zi)))
        return total / b

    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(ref(p1, z2) + ref(p2, z1), **TOL)
    assert byol_loss(p2, p1, z2, z1).item() == pytest.approx(byol_loss(p1, p2, z1, z2).item(), **TOL)
    assert byol_loss(z2, z1, z1, z2).item() == pytest.approx(0.0, abs=1e-12)   # predictions on their targets


def test_byol_targets_get_no_gradient_and_lightly_agrees():
    from lightly.loss import NegativeCosineSimilarity

    p1, p2, z1, z2 = (_randn(4, 8, seed=s).requires_grad_() for s in range(94, 98))
    loss = byol_loss(p1, p2, z1, z2)
    loss.backward()
    assert z1.grad is None and z2.grad is None and p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
    cos = NegativeCosineSimilarity()          # lightly's BYOL example: 0.5 * (cos(p0, z1) + cos(p1, z0))
    lightly = 0.5 * (cos(p1, z2.detach()) + cos(p2, z1.detach()))
    assert loss.item() == pytest.approx(4 + 4 * lightly.item(), **TOL)


# ---------------------------------------------------------------------------------------------------------------
# info_nce
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b,d,t", [(4, 3, 0.2), (6, 5, 0.07), (5, 4, 1.0), (1, 3, 0.5)])
def test_info_nce_in_batch_matches_loop(b, d, t):
    q, k = _randn(b, d, seed=30), _randn(b, d, seed=31)
    assert info_nce(q, k, temperature=t).item() == pytest.approx(ref_info_nce(q, k, t), **TOL)


def test_info_nce_is_scale_invariant():
    q, k = _randn(4, 3, seed=32), _randn(4, 3, seed=33)
    assert info_nce(7 * q, 0.1 * k).item() == pytest.approx(info_nce(q, k).item(), **TOL)


@pytest.mark.parametrize("offset", [0, 2, 4])
def test_info_nce_positive_offset_matches_loop(offset):
    q, k = _randn(3, 4, seed=34), _randn(7, 4, seed=35)  # 7 keys; queries 0..2 use keys offset..offset+2
    assert info_nce(q, k, temperature=0.3, positive_offset=offset).item() == pytest.approx(
        ref_info_nce(q, k, 0.3, offset), **TOL)


def test_info_nce_positive_offset_equals_slice_of_full_batch():
    """The DDP use: the mean of the per-rank losses with offsets rank*B equals the full-batch loss."""
    q, k = _randn(6, 4, seed=36), _randn(6, 4, seed=37)
    full = info_nce(q, k, temperature=0.2)
    parts = [info_nce(q[r * 2:(r + 1) * 2], k, temperature=0.2, positive_offset=r * 2) for r in range(3)]
    assert (sum(parts) / 3).item() == pytest.approx(full.item(), **TOL)


def test_info_nce_positive_offset_out_of_range_raises():
    q, k = _randn(3, 4, seed=38), _randn(6, 4, seed=39)
    info_nce(q, k, positive_offset=3)  # keys 3..5: fine
    with pytest.raises(ValueError):
        info_nce(q, k, positive_offset=4)


@pytest.mark.parametrize("n_neg", [1, 5])
def test_info_nce_with_queue_matches_loop(n_neg):
    q, k, neg = _randn(4, 3, seed=40), _randn(4, 3, seed=41), _randn(n_neg, 3, seed=42)
    assert info_nce(q, k, negatives=neg, temperature=0.1).item() == pytest.approx(
        ref_info_nce_queue(q, k, neg, 0.1), **TOL)


def test_info_nce_queue_gets_no_gradient_but_q_and_k_do():
    q = _randn(4, 3, seed=43).requires_grad_()
    k = _randn(4, 3, seed=44).requires_grad_()
    neg = _randn(6, 3, seed=45).requires_grad_()
    info_nce(q, k, negatives=neg).backward()
    assert neg.grad is None
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0  # k used as given (caller detaches)


def test_info_nce_queue_ignores_other_keys():
    """With a queue, query i's only positive is k[i]; keys of other queries are not negatives."""
    q, k, neg = _randn(4, 3, seed=46), _randn(4, 3, seed=47), _randn(5, 3, seed=48)
    single = [info_nce(q[i:i + 1], k[i:i + 1], negatives=neg) for i in range(4)]
    assert info_nce(q, k, negatives=neg).item() == pytest.approx((sum(single) / 4).item(), **TOL)


def test_info_nce_gradient_matches_autograd_of_reference():
    q = _randn(4, 3, seed=49).requires_grad_()
    k = _randn(4, 3, seed=50)
    info_nce(q, k, temperature=0.5).backward()
    eps = 1e-6
    num = torch.zeros_like(q)
    for i in range(4):
        for j in range(3):
            qp, qm = q.detach().clone(), q.detach().clone()
            qp[i, j] += eps
            qm[i, j] -= eps
            num[i, j] = (ref_info_nce(qp, k, 0.5) - ref_info_nce(qm, k, 0.5)) / (2 * eps)
    torch.testing.assert_close(q.grad, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("t", [0.0, -0.1])
def test_info_nce_non_positive_temperature_raises(t):
    q = _randn(4, 3, seed=51)
    with pytest.raises(ValueError):
        info_nce(q, q, temperature=t)
    with pytest.raises(ValueError):
        moco_v3_loss(q, q, q, q, temperature=t)


@pytest.mark.parametrize("qs,ks", [((4, 3), (4, 5)), ((4,), (4,)), ((4, 3), (4, 3, 1)), ((4, 3), (3, 3))])
def test_info_nce_bad_shapes(qs, ks):
    with pytest.raises(ValueError):
        info_nce(torch.randn(*qs), torch.randn(*ks))


def test_info_nce_queue_needs_one_key_per_query():
    with pytest.raises(ValueError):
        info_nce(torch.randn(4, 3), torch.randn(6, 3), negatives=torch.randn(5, 3))


def test_info_nce_queue_with_wrong_dimension_raises_value_error():
    with pytest.raises(ValueError):
        info_nce(torch.randn(4, 3), torch.randn(4, 3), negatives=torch.randn(5, 4))


def test_info_nce_empty_batch_raises_value_error():
    with pytest.raises(ValueError):
        info_nce(torch.randn(0, 3), torch.randn(4, 3))


# ---------------------------------------------------------------------------------------------------------------
# nt_xent_loss (SimCLR)
# ---------------------------------------------------------------------------------------------------------------

def ref_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Written out from the SimCLR paper (eq. 1): anchors z1_1..z1_B, z2_1..z2_B; the positive of z1_i is z2_i and
    back; the denominator runs over every other embedding; the loss is the mean over the 2B anchors."""
    z = [_unit(r) for r in _rows(z1)] + [_unit(r) for r in _rows(z2)]
    b = len(z) // 2
    total = 0.0
    for a, za in enumerate(z):
        pos = (a + b) % (2 * b)
        denom = sum(math.exp(_dot(za, zj) / t) for j, zj in enumerate(z) if j != a)
        total += -math.log(math.exp(_dot(za, z[pos]) / t) / denom)
    return total / (2 * b)


@pytest.mark.parametrize("b,d,t", [(2, 3, 0.1), (4, 3, 0.5), (6, 5, 0.07), (5, 13, 1.0)])
def test_nt_xent_matches_the_written_out_formula_and_is_symmetric(b, d, t):
    z1, z2 = _randn(b, d, seed=80), _randn(b, d, seed=81)
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(ref_nt_xent(z1, z2, t), **TOL)
    assert nt_xent_loss(z2, z1, t).item() == pytest.approx(nt_xent_loss(z1, z2, t).item(), **TOL)
    assert nt_xent_loss(3 * z1, 0.2 * z2, t).item() == pytest.approx(nt_xent_loss(z1, z2, t).item(), **TOL)


@pytest.mark.parametrize("b,t", [(2, 0.5), (8, 0.1), (16, 0.2)])
def test_nt_xent_equals_lightlys_ntxent(b, t):
    """lightly's NTXentLoss (no memory bank) as a second, independent implementation."""
    from lightly.loss import NTXentLoss

    z1, z2 = _randn(b, 32, seed=82).float(), _randn(b, 32, seed=83).float()
    expected = NTXentLoss(temperature=t)(z1, z2)
    torch.testing.assert_close(nt_xent_loss(z1, z2, t), expected, rtol=1e-5, atol=1e-6)


def test_nt_xent_batch_of_one_has_no_negatives_and_gradients_reach_both_views():
    z1, z2 = _randn(1, 4, seed=84).requires_grad_(), _randn(1, 4, seed=85).requires_grad_()
    assert nt_xent_loss(z1, z2).item() == 0.0
    z1, z2 = _randn(3, 4, seed=86).requires_grad_(), _randn(3, 4, seed=87).requires_grad_()
    nt_xent_loss(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_nt_xent_bad_inputs():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
    with pytest.raises(ValueError, match="z1 and z2 must both be"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="empty batch"):
        nt_xent_loss(torch.randn(0, 3), torch.randn(0, 3))


# ---------------------------------------------------------------------------------------------------------------
# moco_v3_loss
# ---------------------------------------------------------------------------------------------------------------

def test_moco_v3_matches_the_papers_code():
    """MoCo v3 reference code (moco/builder.py): ``contrastive_loss`` returns ``CE * 2T`` and the loss is
    ``contrastive_loss(q1, k2) + contrastive_loss(q2, k1)`` -- a sum, not a mean, of the two directions."""
    q1, q2, k1, k2 = (_randn(5, 4, seed=s) for s in range(60, 64))
    t = 0.2
    expected = 2 * t * ref_info_nce(q1, k2, t) + 2 * t * ref_info_nce(q2, k1, t)
    assert moco_v3_loss(q1, q2, k1, k2, temperature=t).item() == pytest.approx(expected, **TOL)


def test_moco_v3_symmetric_in_swapping_view_pairs():
    q1, q2, k1, k2 = (_randn(4, 3, seed=s) for s in range(64, 68))
    assert moco_v3_loss(q2, q1, k2, k1).item() == pytest.approx(moco_v3_loss(q1, q2, k1, k2).item(), **TOL)


def test_moco_v3_keys_get_no_gradient():
    q1, q2, k1, k2 = (_randn(4, 3, seed=s).requires_grad_() for s in range(68, 72))
    moco_v3_loss(q1, q2, k1, k2).backward()
    assert k1.grad is None and k2.grad is None
    assert q1.grad.abs().sum() > 0 and q2.grad.abs().sum() > 0


def test_moco_v3_bad_shapes():
    with pytest.raises(ValueError):
        moco_v3_loss(torch.randn(4, 3), torch.randn(5, 3), torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError):
        moco_v3_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2), torch.randn(4, 3))


# ---------------------------------------------------------------------------------------------------------------
# Barlow Twins
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b,d,lambd", [(4, 3, 5e-3), (6, 5, 0.1), (2, 4, 1.0)])
def test_barlow_matches_loop(b, d, lambd):
    z1, z2 = _randn(b, d, seed=80) * 3 + 1, _randn(b, d, seed=81)
    assert barlow_twins_loss(z1, z2, lambd=lambd).item() == pytest.approx(ref_barlow(z1, z2, lambd), **TOL)


def test_barlow_symmetric_in_views():
    z1, z2 = _randn(5, 4, seed=82), _randn(5, 4, seed=83)
    assert barlow_twins_loss(z2, z1).item() == pytest.approx(barlow_twins_loss(z1, z2).item(), **TOL)


def test_barlow_identical_views_on_diagonal_is_zero():
    z = _randn(6, 4, seed=84)
    # lambd = 0 leaves the on-diagonal term alone: C_ii = var/(var + eps) ~ 1 for standardised identical views
    assert barlow_twins_loss(z, z, lambd=0.0, eps=0.0).item() == pytest.approx(0.0, abs=1e-20)
    assert barlow_twins_loss(z, z, lambd=0.0).item() == pytest.approx(0.0, abs=1e-6)
    # decorrelated identical views (orthogonal centred columns with equal norm) give C = I exactly
    w = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert barlow_twins_loss(w, w, eps=0.0).item() == pytest.approx(0.0, abs=1e-20)


def test_barlow_is_invariant_to_affine_rescaling_of_each_dimension():
    z1, z2 = _randn(5, 3, seed=85), _randn(5, 3, seed=86)
    scale, shift = torch.tensor([2.0, 0.5, 10.0], dtype=torch.float64), torch.tensor([1.0, -3.0, 7.0],
                                                                                      dtype=torch.float64)
    assert barlow_twins_loss(z1 * scale + shift, z2, eps=0.0).item() == pytest.approx(
        barlow_twins_loss(z1, z2, eps=0.0).item(), **TOL)


@pytest.mark.parametrize("shapes", [((4, 3), (4, 4)), ((4, 3), (5, 3)), ((4,), (4,)), ((1, 3), (1, 3)),
                                    ((0, 3), (0, 3))])
def test_barlow_bad_shapes_and_tiny_batches(shapes):
    with pytest.raises(ValueError):
        barlow_twins_loss(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


# ---------------------------------------------------------------------------------------------------------------
# VICReg
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b,d", [(4, 3), (6, 5), (2, 4)])
def test_vicreg_terms_match_loop(b, d):
    z1, z2 = _randn(b, d, seed=90) * 0.5, _randn(b, d, seed=91) * 2  # one hinge active, one mostly not
    got, want = vicreg_terms(z1, z2), ref_vicreg_terms(z1, z2)
    for name in ("invariance", "variance", "covariance"):
        assert got[name].item() == pytest.approx(want[name], **TOL), name


def test_vicreg_terms_gamma():
    z1, z2 = _randn(5, 3, seed=92), _randn(5, 3, seed=93)
    assert vicreg_terms(z1, z2, gamma=3.0)["variance"].item() == pytest.approx(
        ref_vicreg_terms(z1, z2, gamma=3.0)["variance"], **TOL)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_loss_matches_loop(coeffs):
    z1, z2 = _randn(5, 4, seed=94) * 0.3, _randn(5, 4, seed=95)
    assert vicreg_loss(z1, z2, *coeffs).item() == pytest.approx(ref_vicreg(z1, z2, *coeffs), **TOL)


def test_vicreg_symmetric_in_views():
    z1, z2 = _randn(5, 4, seed=96) * 0.3, _randn(5, 4, seed=97)
    assert vicreg_loss(z2, z1).item() == pytest.approx(vicreg_loss(z1, z2).item(), **TOL)
    a, b = vicreg_terms(z1, z2), vicreg_terms(z2, z1)
    for name in a:
        assert a[name].item() == pytest.approx(b[name].item(), **TOL)


def test_vicreg_identical_views_have_zero_invariance():
    z = _randn(5, 4, seed=98)
    assert vicreg_terms(z, z)["invariance"].item() == 0.0
    # well-spread, decorrelated embeddings: every term vanishes
    w = 2 * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert vicreg_loss(w, w).item() == pytest.approx(0.0, abs=1e-20)


def test_vicreg_collapsed_embeddings_pay_full_variance_penalty():
    z = torch.ones(4, 3, dtype=torch.float64)
    t = vicreg_terms(z, z)
    assert t["variance"].item() == pytest.approx(1 - math.sqrt(1e-4), **TOL)  # 2 views x 1/2 x (1 - sqrt(eps))
    assert t["covariance"].item() == 0.0


@pytest.mark.parametrize("shapes", [((4, 3), (4, 4)), ((4, 3), (5, 3)), ((4,), (4,)), ((1, 3), (1, 3)),
                                    ((0, 3), (0, 3))])
def test_vicreg_bad_shapes_and_tiny_batches(shapes):
    with pytest.raises(ValueError):
        vicreg_loss(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


# ---------------------------------------------------------------------------------------------------------------
# patchify / MAE
# ---------------------------------------------------------------------------------------------------------------

def test_patchify_reads_channels_from_tensor_and_matches_loop():
    b, c, h, w, p = 2, 13, 4, 6, 2
    images = torch.arange(b * c * h * w, dtype=torch.float64).reshape(b, c, h, w)
    x = patchify(images, p)
    assert x.shape == (b, (h // p) * (w // p), p * p * c)
    for bi in range(b):
        for li in range(x.shape[1]):
            expected = [float(images[bi, ch, y, xx]) for ch, y, xx in ref_patch_values(images, bi, li, p)]
            assert x[bi, li].tolist() == expected


def test_patchify_inverts_to_the_image():
    b, c, h, w, p = 2, 13, 6, 4, 2
    images = _randn(b, c, h, w, seed=100)
    x = patchify(images, p)
    # reference unpatchify: (B, h', w', p, p, C) -> (B, C, h', p, w', p) -> (B, C, H, W)
    back = x.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
    assert torch.equal(back, images)


@pytest.mark.parametrize("hw", [(5, 4), (4, 5), (3, 3)])
def test_patchify_size_not_multiple_of_patch_raises(hw):
    with pytest.raises(ValueError):
        patchify(torch.zeros(1, 13, *hw), 2)


def _mae_inputs(seed=110, b=2, c=3, h=4, w=6, p=2):
    images = _randn(b, c, h, w, seed=seed) * 2 + 1
    n = (h // p) * (w // p)
    pred = _randn(b, n, p * p * c, seed=seed + 1)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[0, [0, 2, 3]] = True
    mask[1, [1, 5]] = True
    return pred, images, mask, p


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_matches_loop_without_valid_mask(norm_pix):
    pred, images, mask, p = _mae_inputs()
    assert mae_loss(pred, images, mask, p, norm_pix=norm_pix).item() == pytest.approx(
        ref_mae(pred, images, mask, p, norm_pix=norm_pix), **TOL)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_matches_loop_with_valid_mask(norm_pix):
    pred, images, mask, p = _mae_inputs(seed=120)
    g = torch.Generator().manual_seed(121)
    valid = torch.rand(2, 4, 6, generator=g) > 0.3
    valid[0, 0:2, 0:2] = False  # masked patch 0 of sample 0 fully invalid
    valid[1, 0, 2] = True
    valid[1, 1, 2:4] = False  # masked patch 1 of sample 1: a single valid pixel (variance over 1 value)
    valid[1, 0, 3] = False
    assert mae_loss(pred, images, mask, p, valid=valid, norm_pix=norm_pix).item() == pytest.approx(
        ref_mae(pred, images, mask, p, valid=valid, norm_pix=norm_pix), **TOL)


def test_mae_float_mask_same_as_bool_and_13_bands():
    pred, images, mask, p = _mae_inputs(seed=130, c=13)
    loss_bool = mae_loss(pred, images, mask, p)
    loss_float = mae_loss(pred, images, mask.double(), p)
    assert loss_bool.item() == pytest.approx(loss_float.item(), **TOL)
    assert loss_bool.item() == pytest.approx(ref_mae(pred, images, mask, p), **TOL)


def test_mae_invalid_pixels_do_not_matter():
    pred, images, mask, p = _mae_inputs(seed=140)
    valid = torch.ones(2, 4, 6, dtype=torch.bool)
    valid[:, 1, :] = False
    base = mae_loss(pred, images, mask, p, valid=valid)
    images2, pred2 = images.clone(), pred.clone()
    images2[:, :, 1, :] = 1e4  # garbage where the chip mask says "no data"
    pred2[:, :, :] = torch.where(patchify(valid.unsqueeze(1).expand(-1, 3, -1, -1).double(), p) > 0, pred, -7.0)
    assert mae_loss(pred2, images2, mask, p, valid=valid).item() == pytest.approx(base.item(), **TOL)


def test_mae_unmasked_patches_do_not_matter_and_get_no_gradient():
    pred, images, mask, p = _mae_inputs(seed=150)
    pred = pred.clone().requires_grad_()
    mae_loss(pred, images, mask, p).backward()
    assert torch.all(pred.grad[~mask] == 0)
    assert torch.all(pred.grad[mask].abs().sum(-1) > 0)


def test_mae_perfect_reconstruction_is_zero():
    pred, images, mask, p = _mae_inputs(seed=160)
    assert mae_loss(patchify(images, p), images, mask, p, norm_pix=False).item() == 0.0
    t = patchify(images, p)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()  # MAE's norm_pix_loss
    assert mae_loss(t, images, mask, p).item() == pytest.approx(0.0, abs=1e-20)


def test_mae_no_valid_masked_pixel_raises():
    pred, images, mask, p = _mae_inputs(seed=170)
    with pytest.raises(ValueError):
        mae_loss(pred, images, torch.zeros_like(mask), p)
    valid = torch.ones(2, 4, 6, dtype=torch.bool)
    valid[0, 0:2, 0:2] = valid[0, 0:2, 4:6] = valid[0, 2:4, 0:2] = False  # sample 0 masked patches 0, 2, 3
    valid[1, 0:2, 2:4] = valid[1, 2:4, 4:6] = False  # sample 1 masked patches 1, 5
    with pytest.raises(ValueError):
        mae_loss(pred, images, mask, p, valid=valid)


def test_mae_bad_shapes_raise():
    pred, images, mask, p = _mae_inputs(seed=180)
    with pytest.raises(ValueError):
        mae_loss(pred[:, :, :-1], images, mask, p)
    with pytest.raises(ValueError):
        mae_loss(pred, images, mask[:, :-1], p)
    with pytest.raises(ValueError):
        mae_loss(pred, images[:, :, :, :-1], mask, p)  # 4x5 image, patch 2


def test_mae_valid_mask_of_wrong_shape_raises_value_error():
    pred, images, mask, p = _mae_inputs(seed=190)
    with pytest.raises(ValueError):
        mae_loss(pred, images, mask, p, valid=torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        mae_loss(pred, images, mask, p, valid=torch.ones(4, 6, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------------------
# masked pixel time series (Presto-style masked autoencoding)
# ---------------------------------------------------------------------------------------------------------------

def ref_masked_series(pred, target, valid, hidden) -> float:
    """Sum over (sample, step, band) of the squared error where the value is valid and hidden, over their count."""
    total, n = 0.0, 0
    b, t, c = pred.shape
    for i in range(b):
        for s in range(t):
            for k in range(c):
                if bool(valid[i, s, k]) and bool(hidden[i, s, k]):
                    total += (float(pred[i, s, k]) - float(target[i, s, k])) ** 2
                    n += 1
    return total / n if n else 0.0


def _series_inputs(seed=200, b=3, t=5, c=4):
    g = torch.Generator().manual_seed(seed)
    pred, target = _randn(b, t, c, seed=seed), _randn(b, t, c, seed=seed + 1) * 2 + 1
    valid = torch.rand(b, t, c, generator=g) > 0.25
    hidden = torch.rand(b, t, c, generator=g) > 0.5
    return pred, target, valid, hidden


@pytest.mark.parametrize("b, t, c", [(1, 1, 1), (1, 6, 13), (3, 5, 4), (8, 2, 2)])
def test_masked_series_loss_matches_loop(b, t, c):
    pred, target, valid, hidden = _series_inputs(seed=200 + b * t * c, b=b, t=t, c=c)
    hidden[0, 0, 0] = valid[0, 0, 0] = True                    # at least one value counts
    assert masked_series_loss(pred, target, valid, hidden).item() == pytest.approx(
        ref_masked_series(pred, target, valid, hidden), **TOL)


def test_masked_series_loss_is_zero_without_hidden_valid_values_and_for_a_perfect_reconstruction():
    pred, target, valid, hidden = _series_inputs(seed=210)
    assert masked_series_loss(pred, target, valid, torch.zeros_like(hidden)).item() == 0.0
    assert masked_series_loss(pred, target, torch.zeros_like(valid), hidden).item() == 0.0
    assert masked_series_loss(pred, target, valid & ~hidden, hidden).item() == 0.0      # disjoint masks
    assert masked_series_loss(target.clone(), target, valid, hidden).item() == 0.0


def test_masked_series_loss_ignores_visible_and_invalid_values_and_their_gradient():
    pred, target, valid, hidden = _series_inputs(seed=220)
    counted = valid & hidden
    base = masked_series_loss(pred, target, valid, hidden)
    junk_pred = torch.where(counted, pred, torch.full_like(pred, -7.0))
    junk_target = torch.where(counted, target, torch.full_like(target, 1e4))
    assert masked_series_loss(junk_pred, junk_target, valid, hidden).item() == pytest.approx(base.item(), **TOL)
    pred = pred.clone().requires_grad_()
    masked_series_loss(pred, target, valid, hidden).backward()
    assert torch.all(pred.grad[~counted] == 0)
    # d/dpred of sum((pred - target)^2) / n, written out
    n = int(counted.sum())
    expected = 2 * (pred.detach() - target) / n
    torch.testing.assert_close(pred.grad[counted], expected[counted], rtol=1e-12, atol=1e-14)


def test_masked_series_loss_float32_agrees_with_float64():
    pred, target, valid, hidden = _series_inputs(seed=230)
    loss32 = masked_series_loss(pred.float(), target.float(), valid, hidden)
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(ref_masked_series(pred, target, valid, hidden), rel=1e-5)


@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 5), (2, 3, 4), (2, 3, 4)),      # target
                                    ((2, 3, 4), (2, 3, 4), (2, 3), (2, 3, 4)),         # valid
                                    ((2, 3, 4), (2, 3, 4), (2, 3, 4), (2, 4, 4)),      # hidden
                                    ((6, 4), (6, 4), (6, 4), (6, 4))])                 # no time axis
def test_masked_series_loss_bad_shapes_raise(shapes):
    p, t, v, h = shapes
    with pytest.raises(ValueError):
        masked_series_loss(torch.zeros(p), torch.zeros(t), torch.ones(v, dtype=torch.bool),
                           torch.ones(h, dtype=torch.bool))


def test_masked_series_loss_wants_bool_masks():
    pred, target, valid, hidden = _series_inputs(seed=240)
    with pytest.raises(ValueError, match="bool"):
        masked_series_loss(pred, target, valid.double(), hidden)


# ---------------------------------------------------------------------------------------------------------------
# pretext tasks: rotation prediction, jigsaw
# ---------------------------------------------------------------------------------------------------------------

def test_rotations_are_the_four_quarter_turns_with_their_labels():
    x = _randn(3, 2, 4, 4, seed=100)
    rotated, labels = rotations(x)
    assert rotated.shape == (12, 2, 4, 4) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for i in range(12):
        b, k = i % 3, int(labels[i])
        chip = x[b]
        for _ in range(k):      # one quarter turn counter-clockwise, written out: out[r, c] = in[c, S - 1 - r]
            chip = torch.stack([torch.stack([chip[:, c, 3 - r] for c in range(4)], dim=-1) for r in range(4)], dim=-2)
        torch.testing.assert_close(rotated[i], chip, rtol=0, atol=0)
    with pytest.raises(ValueError, match="square chips"):
        rotations(torch.zeros(2, 3, 4, 5))


def test_jigsaw_permutations_are_distinct_seeded_and_far_apart():
    p = jigsaw_permutations(100, grid=3, seed=0)
    assert p.shape == (100, 9) and p.dtype == torch.long
    assert all(sorted(row.tolist()) == list(range(9)) for row in p)
    assert len({tuple(row.tolist()) for row in p}) == 100
    assert torch.equal(p, jigsaw_permutations(100, grid=3, seed=0))
    assert not torch.equal(p, jigsaw_permutations(100, grid=3, seed=1))
    hamming = (p[:, None, :] != p[None, :, :]).sum(-1) + 9 * torch.eye(100, dtype=torch.long)
    assert hamming.min() >= 6          # random picks from 9! would often be 2 apart
    with pytest.raises(ValueError, match="permutations"):
        jigsaw_permutations(3, grid=2 - 1)
    with pytest.raises(ValueError, match="permutations"):
        jigsaw_permutations(25, grid=2)     # 4! = 24 orders only


def test_shuffle_tiles_moves_whole_tiles_and_keeps_the_border():
    x = torch.arange(2 * 2 * 7 * 7, dtype=torch.float64).reshape(2, 2, 7, 7)   # 7 px: 2 px tiles, 1 px border
    perms = jigsaw_permutations(5, grid=3, seed=3)
    index = torch.tensor([4, 1])
    out = shuffle_tiles(x, perms, index)
    assert out.shape == x.shape
    for b in range(2):
        for slot in range(9):
            src = int(perms[index[b], slot])
            r, c, sr, sc = 2 * (slot // 3), 2 * (slot % 3), 2 * (src // 3), 2 * (src % 3)
            torch.testing.assert_close(out[b, :, r:r + 2, c:c + 2], x[b, :, sr:sr + 2, sc:sc + 2], rtol=0, atol=0)
    torch.testing.assert_close(out[:, :, 6, :], x[:, :, 6, :], rtol=0, atol=0)
    torch.testing.assert_close(out[:, :, :, 6], x[:, :, :, 6], rtol=0, atol=0)
    identity = torch.arange(9)[None]
    torch.testing.assert_close(shuffle_tiles(x, identity, torch.zeros(2, dtype=torch.long)), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="too small"):
        shuffle_tiles(torch.zeros(1, 1, 2, 2), perms, torch.zeros(1, dtype=torch.long))


def test_pretext_loss_is_cross_entropy_written_out():
    logits, labels = _randn(5, 4, seed=101), torch.tensor([0, 3, 1, 1, 2])
    expected = 0.0
    for row, y in zip(_rows(logits), labels.tolist()):
        expected += -row[y] + math.log(sum(math.exp(v) for v in row))
    assert pretext_loss(logits, labels).item() == pytest.approx(expected / 5, **TOL)
    with pytest.raises(ValueError, match="logits must be"):
        pretext_loss(torch.zeros(5, 4), torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------------
# dino_loss / dino_center
# ---------------------------------------------------------------------------------------------------------------

def ref_dino(teacher, student, center, tt, ts) -> float:
    """Written out from the DINO paper's pseudo-code: H(t, s) = -sum_k P_t(k) log P_s(k), over teacher view i and
    student view j != i, averaged over the pairs and the batch."""
    c = [float(v) for v in center.reshape(-1)]
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            pairs += 1
            for tb, sb in zip(_rows(t), _rows(s)):
                pt = [math.exp((v - ck) / tt) for v, ck in zip(tb, c)]
                zs = sum(math.exp(v / ts) for v in sb)
                total += -sum(p / sum(pt) * (v / ts - math.log(zs)) for p, v in zip(pt, sb))
    return total / (pairs * len(_rows(teacher[0])))


@pytest.mark.parametrize("n_teacher,n_student,b", [(2, 2, 3), (2, 6, 4), (1, 3, 1)])
def test_dino_loss_matches_the_written_out_formula(n_teacher, n_student, b):
    k = 7
    teacher = [_randn(b, k, seed=110 + i) for i in range(n_teacher)]
    student = [_randn(b, k, seed=120 + j) for j in range(n_student)]
    center = _randn(1, k, seed=130)
    got = dino_loss(teacher, student, center, teacher_temp=0.05, student_temp=0.1)
    assert got.item() == pytest.approx(ref_dino(teacher, student, center, 0.05, 0.1), rel=1e-9, abs=1e-9)


def test_dino_loss_and_centre_equal_lightlys_dinoloss():
    from lightly.loss import DINOLoss

    k, b = 16, 5
    teacher = [_randn(b, k, seed=140 + i).float() for i in range(2)]
    student = [_randn(b, k, seed=150 + j).float() for j in range(4)]
    ref = DINOLoss(output_dim=k, warmup_teacher_temp=0.04, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9)
    expected = ref(teacher, student, teacher_temp=0.04)            # lightly updates its centre after the loss
    torch.testing.assert_close(dino_loss(teacher, student, torch.zeros(1, k), 0.04, 0.1), expected,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dino_center(torch.zeros(1, k), teacher, 0.9), ref.center.reshape(1, k),
                               rtol=1e-6, atol=1e-7)


def test_dino_teacher_gets_no_gradient_and_the_centre_is_a_moving_mean():
    teacher = [_randn(3, 4, seed=160 + i).requires_grad_() for i in range(2)]
    student = [_randn(3, 4, seed=170 + j).requires_grad_() for j in range(3)]
    dino_loss(teacher, student, torch.zeros(1, 4)).backward()
    assert all(t.grad is None for t in teacher) and all(s.grad.abs().sum() > 0 for s in student)
    center = _randn(1, 4, seed=180)
    mean = torch.cat([t.detach() for t in teacher]).mean(0, keepdim=True)
    torch.testing.assert_close(dino_center(center, teacher, 0.8), 0.8 * center + 0.2 * mean, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least two views"):
        dino_loss(teacher[:1], student[:1], torch.zeros(1, 4))
    with pytest.raises(ValueError, match="must agree"):
        dino_loss(teacher, [_randn(3, 5, seed=1)], torch.zeros(1, 4))
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        dino_loss(teacher, student, torch.zeros(1, 4), teacher_temp=0.0)


# ---------------------------------------------------------------------------------------------------------------
# sinkhorn / swav_loss
# ---------------------------------------------------------------------------------------------------------------

def ref_sinkhorn(scores: torch.Tensor, eps: float, iterations: int) -> list[list[float]]:
    """SwAV's Algorithm (appendix A.1) written out on lists: Q = exp(S / eps)^T, normalised to sum 1, then
    alternately rows (prototypes) to 1/K and columns (samples) to 1/B; the codes are B * Q^T."""
    s = _rows(scores)
    b, k = len(s), len(s[0])
    q = [[math.exp(s[j][i] / eps) for j in range(b)] for i in range(k)]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        q = [[v / sum(row) / k for v in row] for row in q]
        cols = [sum(q[i][j] for i in range(k)) for j in range(b)]
        q = [[q[i][j] / cols[j] / b for j in range(b)] for i in range(k)]
    return [[b * q[i][j] for i in range(k)] for j in range(b)]


@pytest.mark.parametrize("b,k,iters", [(1, 3, 1), (5, 4, 3), (8, 16, 5)])
def test_sinkhorn_matches_the_written_out_algorithm_and_lightly(b, k, iters):
    from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn

    scores = torch.nn.functional.normalize(_randn(b, k, seed=190), dim=1)
    codes = sinkhorn(scores, 0.05, iters)
    expected = torch.tensor(ref_sinkhorn(scores, 0.05, iters), dtype=torch.float64)
    torch.testing.assert_close(codes, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(codes, lightly_sinkhorn(scores.clone(), iters, 0.05), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(codes.sum(1), torch.ones(b, dtype=torch.float64), rtol=0, atol=1e-9)


def test_sinkhorn_spreads_the_batch_evenly_over_the_prototypes():
    scores = torch.nn.functional.normalize(_randn(64, 8, seed=191), dim=1)
    codes = sinkhorn(scores, epsilon=0.5, iterations=50)
    torch.testing.assert_close(codes.sum(0), torch.full((8,), 64 / 8, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="epsilon > 0"):
        sinkhorn(scores, epsilon=0.0)


def test_swav_loss_matches_the_written_out_formula_and_lightlys_swavloss():
    from lightly.loss import SwaVLoss

    b, k, t = 4, 6, 0.1
    scores = [torch.nn.functional.normalize(_randn(b, k, seed=200 + v), dim=1) for v in range(5)]
    codes = [sinkhorn(scores[i]) for i in range(2)]
    expected = 0.0
    for i, q in enumerate(codes):
        sub = 0.0
        for v, sv in enumerate(scores):
            if v == i:
                continue
            for qr, sr in zip(_rows(q), _rows(sv)):
                z = sum(math.exp(x / t) for x in sr)
                sub += -sum(qq * (x / t - math.log(z)) for qq, x in zip(qr, sr)) / b
        expected += sub / 4
    got = swav_loss(scores, codes, t)
    assert got.item() == pytest.approx(expected / 2, rel=1e-9)
    lightly = SwaVLoss(temperature=t, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(scores[:2], scores[2:])
    assert got.item() == pytest.approx(lightly.item(), rel=1e-9)
    with pytest.raises(ValueError, match="at least two views"):
        swav_loss(scores[:1], codes[:1])


# ---------------------------------------------------------------------------------------------------------------
# I-JEPA blocks and loss
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid", [(4, 4), (8, 6), (14, 14)])
def test_jepa_blocks_are_seeded_rectangles_with_a_disjoint_context(grid):
    h, w = grid
    context, targets = jepa_blocks(grid, torch.Generator().manual_seed(3), n_targets=4)
    again = jepa_blocks(grid, torch.Generator().manual_seed(3), n_targets=4)
    assert torch.equal(context, again[0]) and torch.equal(targets, again[1])
    assert targets.shape[0] == 4 and context.numel() >= 1
    assert not set(context.tolist()) & set(targets.reshape(-1).tolist()), "no target patch is in the context"
    for block in targets:                                   # each target is a full rectangle of the grid
        rows, cols = block // w, block % w
        assert block.numel() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0 <= block.min() and block.max() < h * w
    with pytest.raises(ValueError, match="cover the whole 1 x 1 patch grid"):
        jepa_blocks((1, 1), torch.Generator().manual_seed(0), n_targets=1)


def test_jepa_loss_is_smooth_l1_to_layer_normed_targets_written_out():
    pred, target = _randn(2, 3, 4, seed=210), _randn(2, 3, 4, seed=211)
    expected, n = 0.0, 0
    for pb, tb in zip(pred, target):
        for p_row, t_row in zip(_rows(pb), _rows(tb)):
            mu = sum(t_row) / 4
            sd = math.sqrt(sum((v - mu) ** 2 for v in t_row) / 4 + 1e-5)
            for pv, tv in zip(p_row, t_row):
                d = abs(pv - (tv - mu) / sd)
                expected += 0.5 * d * d if d < 1 else d - 0.5
                n += 1
    assert jepa_loss(pred, target).item() == pytest.approx(expected / n, rel=1e-5)
    t = target.clone().requires_grad_()
    jepa_loss(pred.clone().requires_grad_(), t).backward()
    assert t.grad is None, "the targets come from the EMA encoder: no gradient"
    with pytest.raises(ValueError, match=r"must both be \(B, N, D\)"):
        jepa_loss(pred, target[:, :2])
