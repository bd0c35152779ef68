"""Typed results: validation, lossless JSON round trips, device moves."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_core.knn import NeighbourExplanation

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool]


@st.composite
def tensors(draw, max_dims: int = 3):
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=max_dims))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64) * 100
    if draw(st.booleans()) and t.numel():
        t.view(-1)[0] = float("nan") if dtype.is_floating_point else 0
    return t.to(dtype)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-exact equality (NaN payloads included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


@given(tensors())
def test_metric_result_round_trip_is_bit_exact(t: torch.Tensor) -> None:
    m = xc.MetricResult(name="m", value=0.25, per_sample=t.reshape(-1), ci=(0.1, 0.4), ci_level=0.9, n=t.numel(), details={"a": [1, 2]})
    back = xc.MetricResult.from_json(m.to_json())
    assert _same(back.per_sample, m.per_sample)
    assert (back.value, back.ci, back.ci_level, back.details) == (0.25, (0.1, 0.4), 0.9, {"a": [1, 2]})


@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 1000))
def test_ranking_and_matches_round_trip(n: int, L: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, generator=g)
    r = xc.Ranking(order=torch.argsort(scores, descending=True), scores=scores,
                   pairs=torch.randint(0, 49, (n, L, 2), generator=g), weights=torch.rand(n, L, generator=g))
    r2 = xc.Ranking.from_json(r.to_json())
    for f in ("order", "scores", "pairs", "weights"):
        assert torch.equal(getattr(r, f), getattr(r2, f))
    m = xc.Matches(pairs=r.pairs[:, 0], scores=scores)
    m2 = xc.Matches.from_json(m.to_json())
    assert torch.equal(m.pairs, m2.pairs) and torch.equal(m.scores, m2.scores)


def test_explanation_subclass_round_trip_and_to_device() -> None:
    e = NeighbourExplanation(method="knn", query_id=3, prediction=1, confidence=0.4, support_ids=torch.tensor([5, 7]),
                             support_scores=torch.tensor([0.9, 0.8]), support_ranks=torch.tensor([0, 2]), k=20,
                             patch_pairs=torch.zeros(2, 5, 2, dtype=torch.long), grid=(7, 7), meta={"note": "x"})
    e2 = NeighbourExplanation.from_json(e.to_json())
    assert torch.equal(e2.support_ids, e.support_ids) and e2.grid == (7, 7) and e2.meta == {"note": "x"}
    moved = e.to("meta")
    assert moved.support_ids.device.type == "meta" and e.support_ids.device.type == "cpu"
    assert moved.query_id == 3


def test_nested_models_move() -> None:
    sr = xc.SearchResult(ids=torch.zeros(1, 2, dtype=torch.long), positions=torch.zeros(1, 2, dtype=torch.long),
                         labels=torch.zeros(1, 2, dtype=torch.long), scores=torch.zeros(1, 2))
    from xcorr_core.knn import KNNPrediction

    p = KNNPrediction(predictions=torch.zeros(1, dtype=torch.long), confidences=torch.zeros(1), votes=torch.zeros(1, dtype=torch.long), neighbours=sr)
    assert p.to("meta").neighbours.scores.device.type == "meta"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(order=torch.arange(3).float(), scores=torch.zeros(3), pairs=torch.zeros(3, 5, 2, dtype=torch.long), weights=torch.zeros(3, 5)), "order"),
        (dict(order=torch.arange(3), scores=torch.zeros(3), pairs=torch.zeros(3, 5, 3, dtype=torch.long), weights=torch.zeros(3, 5)), "pairs"),
        (dict(order=torch.arange(3), scores=torch.zeros(3), pairs=torch.zeros(3, 5, 2, dtype=torch.long), weights=torch.zeros(3, 4)), "weights"),
        (dict(order=torch.arange(3), scores=torch.zeros(3, 1), pairs=torch.zeros(3, 5, 2, dtype=torch.long), weights=torch.zeros(3, 5)), "scores"),
    ],
)
def test_ranking_rejects_bad_shapes(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        xc.Ranking(**kwargs)


def test_matches_and_metric_validation() -> None:
    with pytest.raises(ValueError, match="pairs"):
        xc.Matches(pairs=torch.zeros(4, 2), scores=torch.zeros(4))
    with pytest.raises(ValueError, match="scores"):
        xc.Matches(pairs=torch.zeros(4, 2, dtype=torch.long), scores=torch.zeros(3))
    with pytest.raises(ValueError, match="ci_level"):
        xc.MetricResult(name="m", value=1.0, ci=(0.0, 1.0))
    with pytest.raises(ValueError, match="low"):
        xc.MetricResult(name="m", value=1.0, ci=(0.9, 0.1), ci_level=0.95)
    with pytest.raises(NotImplementedError):
        xc.Explanation(method="x").plot()
