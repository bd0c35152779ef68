"""The local path (residual tails evaluated on an edit's window) against g itself and the generic path."""
from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

import xcorr_core as xc
from xcorr_scc_counterfactual import search_counterfactual, semantic_cosine, split_model
from xcorr_scc_counterfactual.local import _Local, local_tail_of


def _randomise_bn(m: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            c = b.num_features
            b.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            b.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            b.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            b.bias.data.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)


def _tail(kind: str, seed: int = 0, d: int = 32, classes: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    blocks = [Bottleneck(d, d // 4), Bottleneck(d, d // 4)] if kind == "bottleneck" else [BasicBlock(d, d)]
    g = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(d, classes)).eval()
    _randomise_bn(g, seed)
    return g


def _all_pairs(hw: int, big_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(hw).repeat_interleave(big_n), torch.arange(big_n).repeat(hw)


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["bottleneck", "basic"]), h=st.integers(1, 7), w=st.integers(1, 7), seed=st.integers(0, 10**6))
def test_every_candidate_scores_as_g_on_the_edited_map(kind, h, w, seed) -> None:
    """Each (query cell, distractor cell) score equals log-softmax of g on the fully edited map,
    on any grid (windows cut by every border, maps smaller than the window)."""
    g = _tail(kind, seed % 7)
    gen = torch.Generator().manual_seed(seed)
    q, ds = torch.randn(32, h, w, generator=gen).relu(), torch.randn(2, 32, h, w, generator=gen).relu()
    cur = q.flatten(1).T.contiguous()
    dcells = ds.permute(0, 2, 3, 1).reshape(-1, 32).contiguous()
    scorer = _Local(local_tail_of(g), cur.clone(), dcells, (h, w), 2, chunk=7)
    with torch.no_grad():
        torch.testing.assert_close(scorer.z, g(q[None])[0], rtol=1e-5, atol=1e-5)
        ci, cj = _all_pairs(h * w, len(dcells))
        x = cur.expand(len(ci), -1, -1).clone()
        x[torch.arange(len(ci)), ci] = dcells[cj]
        ref = torch.log_softmax(g(x.transpose(1, 2).reshape(-1, 32, h, w)), 1)[:, 2]
        torch.testing.assert_close(scorer.score(ci, cj), ref, rtol=1e-5, atol=1e-5)
        k = len(ci) - 1
        scorer.apply(int(ci[k]), int(cj[k]))  # the current map's forward follows the edit
        torch.testing.assert_close(scorer.z, g(x[k].T.reshape(1, 32, h, w))[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("prefilter", [1.0, 0.3])
def test_local_path_chooses_the_generic_paths_edits(seed, prefilter) -> None:
    g = _tail("bottleneck", seed)
    gen = torch.Generator().manual_seed(100 + seed)
    q, ds = torch.randn(32, 6, 5, generator=gen).relu(), torch.randn(3, 32, 6, 5, generator=gen).relu()
    u = torch.randn(4, 8, 6, 5, generator=gen)
    cos = semantic_cosine(u[0], u[1:])
    log_sem = torch.log_softmax(cos / 0.1, 1)
    with torch.no_grad():
        target = int(g(q[None])[0].argsort()[-2])
    kw = dict(log_semantic=log_sem, prefilter=prefilter, prefilter_key=cos, max_edits=4, stop_at_flip=False)
    local = search_counterfactual(q, ds, g, target, path="auto", chunk=50, **kw)
    generic = search_counterfactual(q, ds, g, target, path="generic", **kw)
    assert local.path == "local" and generic.path == "generic"
    key = lambda r: [(e.query_cell, e.distractor, e.distractor_cell) for e in r.edits]  # noqa: E731
    assert key(local) == key(generic) and len(local.edits) == 4
    for a, b in zip(local.edits, generic.edits):
        assert a.score == pytest.approx(b.score, abs=1e-4)
    assert local.prob_target == pytest.approx(generic.prob_target, abs=1e-5)


def test_resnet50_paper_cut_is_recognised_and_exact() -> None:
    """The paper's g (layer4[1:] + pool + fc of a ResNet-50) takes the local path; BatchNorm folded."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None, num_classes=10).eval()
    _randomise_bn(model.layer4, 1)
    split = split_model(model, "paper")
    tail = split.local_tail()
    assert tail is not None and len(tail.blocks) == 2 and tail.radius == 2
    gen = torch.Generator().manual_seed(0)
    q, ds = torch.randn(2048, 7, 7, generator=gen).relu(), torch.randn(1, 2048, 7, 7, generator=gen).relu()
    cur = q.flatten(1).T.contiguous()
    dcells = ds.permute(0, 2, 3, 1).reshape(-1, 2048).contiguous()
    ci, cj = torch.tensor([0, 6, 24, 48, 30]), torch.tensor([5, 48, 0, 17, 30])
    with torch.no_grad():
        scores = _Local(tail, cur.clone(), dcells, (7, 7), 4, chunk=2).score(ci, cj)
        x = cur.expand(len(ci), -1, -1).clone()
        x[torch.arange(len(ci)), ci] = dcells[cj]
        ref = torch.log_softmax(split.g(x.transpose(1, 2).reshape(-1, 2048, 7, 7)), 1)[:, 4]
    torch.testing.assert_close(scores, ref, rtol=1e-4, atol=1e-4)


def test_what_the_local_path_does_not_take() -> None:
    """Tails it cannot evaluate locally are left to the generic path; asking for it is a clear error."""
    strided = nn.Sequential(Bottleneck(32, 8, stride=2, downsample=nn.Sequential(nn.Conv2d(32, 32, 1, 2, bias=False),
                                                                                   nn.BatchNorm2d(32))),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)).eval()
    grouped = nn.Sequential(Bottleneck(32, 8, groups=2, base_width=64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)).eval()
    no_pool = nn.Sequential(Bottleneck(32, 8), nn.Flatten(), nn.Linear(32 * 9, 4)).eval()

    class MyBlock(Bottleneck):  # a subclass may change forward
        pass

    sub = nn.Sequential(MyBlock(32, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)).eval()
    for g in (strided, grouped, no_pool, sub):
        assert local_tail_of(g) is None
    q, ds = torch.rand(32, 3, 3), torch.rand(1, 32, 3, 3)
    with torch.no_grad():
        target = int(grouped(q[None])[0].argmin())
    assert search_counterfactual(q, ds, grouped, target, max_edits=1).path == "generic"
    with pytest.raises(xc.InputError, match="local"):
        search_counterfactual(q, ds, grouped, target, path="local")
    with pytest.raises(xc.InputError, match="memory_mb"):
        search_counterfactual(q, ds, grouped, target, memory_mb=0)
    # a window as large as the map: auto keeps the generic path, an explicit request is honoured
    g = _tail("basic")
    q, ds = torch.rand(32, 2, 2), torch.rand(1, 32, 2, 2)
    with torch.no_grad():
        target = int(g(q[None])[0].argmin())
    assert search_counterfactual(q, ds, g, target, max_edits=1).path == "generic"
    assert search_counterfactual(q, ds, g, target, max_edits=1, path="local").path == "local"


def test_chunks_follow_the_memory_budget() -> None:
    g = _tail("bottleneck")
    gen = torch.Generator().manual_seed(3)
    q, ds = torch.randn(32, 6, 6, generator=gen).relu(), torch.randn(2, 32, 6, 6, generator=gen).relu()
    with torch.no_grad():
        target = int(g(q[None])[0].argmin())
    small = search_counterfactual(q, ds, g, target, max_edits=2, stop_at_flip=False, memory_mb=0.05)
    big = search_counterfactual(q, ds, g, target, max_edits=2, stop_at_flip=False, memory_mb=64)
    generic = search_counterfactual(q, ds, g, target, max_edits=2, stop_at_flip=False, memory_mb=0.05, path="generic")
    assert small.chunk < big.chunk and small.chunk >= 1 and generic.chunk == max(1, int(0.05 * 2**20 // (4 * 36 * 32 * 4)))
    assert [e.query_cell for e in small.edits] == [e.query_cell for e in big.edits] == [e.query_cell for e in generic.edits]
    assert search_counterfactual(q, ds, g, target, max_edits=1, chunk=5).chunk == 5
