"""ProtoKNN's losses against direct formulas, hand-computed cases and POT."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xcorr_core.errors import InputError
from xcorr_protoknn import ClusterLoss, MarginLoss, ProxyAnchorLoss, class_affiliation, gumbel_affiliation, patch_costs, sinkhorn_assignment


def test_margin_loss_equals_a_direct_formula():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.5], [3.0, 3.0]])
    y = torch.tensor([0, 0, 1, 1, 2])
    loss = MarginLoss(3, margin=0.2, beta_init=1.2)
    with torch.no_grad():
        loss.beta.copy_(torch.tensor([1.2, 0.5, 1.0]))
    terms = []
    for a in range(5):
        d = [((x[a] - x[b]).square().sum() + 1e-8).sqrt() for b in range(5)]
        pos = [d[b] for b in range(5) if b != a and y[b] == y[a]]
        neg = [d[b] for b in range(5) if y[b] != y[a]]
        beta = float(loss.beta.detach()[y[a]])
        if pos:
            terms.append(max(0.0, float(max(pos)) - beta + 0.2))
        terms.append(max(0.0, beta - float(min(neg)) + 0.2))
    nonzero = [t for t in terms if t > 0]
    assert float(loss(x, y).detach()) == pytest.approx(sum(nonzero) / len(nonzero), rel=1e-6)
    x.requires_grad_(True)
    loss(x, y).backward()
    assert loss.beta.grad is not None and bool(torch.isfinite(x.grad).all())


def test_margin_loss_all_satisfied_is_zero_and_single_class_is_an_error():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    assert float(MarginLoss(2, 0.2, 1.2)(x, torch.tensor([0, 0, 1, 1])).detach()) == 0.0
    with pytest.raises(InputError, match="two classes"):
        MarginLoss(2)(x, torch.zeros(4, dtype=torch.long))


def test_gumbel_affiliation_by_hand_with_fixed_noise():
    s = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.0], [0.2, 0.2, 0.7]])
    noise = torch.zeros(3, 3, 3)
    noise[0, 2, 1] = 100.0  # sample 0 against sample 2 draws prototype 1 whatever the profiles say
    E = gumbel_affiliation(s, tau=0.05, gumbel=noise)
    # a=0: vs b=1 argmax(s0 - s1) = 0; vs b=2 forced 1. a=1: vs 0 -> 1, vs 2 -> 1. a=2: vs 0 -> 2, vs 1 -> 2
    assert E.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]


def test_class_affiliation_by_hand():
    E = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    classes, ebar, ehat, p = class_affiliation(E, labels)
    assert classes.tolist() == [0, 1]
    assert ebar.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.5, 0.0]]
    # de-biasing: each prototype's mass shared across classes; 0/0 -> 0
    assert torch.allclose(ehat, torch.tensor([[0.5, 2 / 3, 0.0], [0.5, 1 / 3, 0.0]]))
    assert torch.allclose(p, torch.tensor([[0.5 / (0.5 + 2 / 3), (2 / 3) / (0.5 + 2 / 3), 0.0], [0.6, 0.4, 0.0]]))


@given(st.integers(0, 1000))
def test_sinkhorn_assignment_equals_pot_per_class(seed):
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 0, 2, 2, 5, 5, 5, 5])
    cost = torch.rand(9, 6, generator=g, dtype=torch.float64) * 2
    classes = labels.unique()
    aff = torch.rand(3, 6, generator=g, dtype=torch.float64)
    aff[1, 2] = 0  # a prototype a class holds none of
    aff = aff / aff.sum(1, keepdim=True)
    T = sinkhorn_assignment(cost, labels, aff, classes, eps=0.5, max_iter=5000, tol=1e-12)
    for j, c in enumerate(classes.tolist()):
        rows = (labels == c).nonzero().flatten()
        a = torch.ones(rows.numel(), dtype=torch.float64)
        b = rows.numel() * aff[j]
        keep = b > 0
        ref = ot.sinkhorn(a.numpy(), b[keep].numpy(), cost[rows][:, keep].numpy(), 0.5, numItermax=20000, stopThr=1e-13)
        assert torch.allclose(T[rows][:, keep], torch.from_numpy(ref), atol=1e-7)
        assert float(T[rows][:, ~keep].abs().sum()) == 0.0
        assert torch.allclose(T[rows].sum(1), a, atol=1e-8)


def test_cluster_loss_modes_and_gradient_only_through_costs():
    g = torch.Generator().manual_seed(0)
    cos = (torch.rand(6, 5, 4, generator=g) * 2 - 1).requires_grad_(True)
    prof = cos.amax(-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    c, c_hat = patch_costs(cos)
    assert torch.allclose(c, 2 - 2 * cos.amax(-1)) and torch.allclose(c_hat, 2 * (cos.mean(-1) - cos.amax(-1)))
    noise = torch.zeros(6, 6, 5)
    for mode in ("most_similar", "sampling", "debias", "assignment", "full"):
        loss = ClusterLoss(mode)
        t = loss.plan(prof, cos, labels, gumbel=noise)
        assert t.shape == (6, 5) and not t.requires_grad
        assert torch.allclose(t.sum(1), torch.ones(6), atol=1e-3)
        value = loss(prof, cos, labels, gumbel=noise)
        want = (t * (c_hat if mode == "full" else c)).sum() / 6
        assert torch.allclose(value, want)
    most = ClusterLoss("most_similar").plan(prof, cos, labels)
    assert torch.equal(most.argmax(1), cos.amax(-1).argmax(1))
    ClusterLoss("full")(prof, cos, labels, gumbel=noise).backward()
    assert cos.grad is not None and bool(torch.isfinite(cos.grad).all())
    with pytest.raises(InputError):
        ClusterLoss("other")  # type: ignore[arg-type]


def test_proxy_anchor_loss_is_finite_and_pulls_to_proxies():
    torch.manual_seed(0)
    pa = ProxyAnchorLoss(3, 4)
    x = torch.nn.functional.normalize(pa.proxies.detach()[[0, 0, 1, 1, 2]] + 0.01, dim=1)
    far = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    y = torch.tensor([0, 0, 1, 1, 2])
    assert float(pa(x, y).detach()) < float(pa(far, y).detach())
