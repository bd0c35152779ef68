"""mutual_nn matcher: equals a brute-force double loop, is mutual and symmetric."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_core.matching import mutual_nearest_neighbours


def _maps(seed: int, c: int, h: int, w: int) -> torch.Tensor:
    return torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed))


def _brute(a: torch.Tensor, b: torch.Tensor, metric: str) -> set[tuple[int, int]]:
    fa, fb = a.flatten(1).T.double(), b.flatten(1).T.double()

    def dist(x, y):
        if metric == "l2":
            return float(((x - y) ** 2).sum().sqrt())
        return 1 - float((x @ y) / (x.norm() * y.norm()))

    D = [[dist(x, y) for y in fb] for x in fa]
    best_b = [min(range(len(fb)), key=lambda j: D[i][j]) for i in range(len(fa))]
    best_a = [min(range(len(fa)), key=lambda i: D[i][j]) for j in range(len(fb))]
    return {(i, j) for i, j in enumerate(best_b) if best_a[j] == i}


@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from(["l2", "cosine"]))
def test_equals_brute_force_and_is_mutual_and_symmetric(seed, c, h1, w1, h2, w2, metric) -> None:
    a, b = _maps(seed, c, h1, w1), _maps(seed + 1, c, h2, w2)
    pairs, dist = mutual_nearest_neighbours(a, b, metric)
    got = {tuple(p) for p in pairs.tolist()}
    assert got == _brute(a, b, metric)
    assert len({i for i, _ in got}) == len(got) == len({j for _, j in got})  # one-to-one
    back = {(i, j) for j, i in mutual_nearest_neighbours(b, a, metric)[0].tolist()}
    assert back == got  # matching b to a gives the same pairs
    assert bool((dist >= -1e-6).all())


def test_identical_maps_match_every_cell_to_itself() -> None:
    a = _maps(0, 8, 3, 3)
    m = xc.create("matcher", "mutual_nn").match(a, a.clone())
    assert torch.equal(m.pairs[:, 0], m.pairs[:, 1]) and m.pairs.shape[0] == 9
    assert torch.allclose(m.scores, torch.zeros(9), atol=1e-6)


def test_errors() -> None:
    with pytest.raises(xc.InputError, match="channels"):
        mutual_nearest_neighbours(torch.rand(3, 2, 2), torch.rand(4, 2, 2))
    with pytest.raises(xc.InputError, match="NaN"):
        mutual_nearest_neighbours(torch.full((3, 2, 2), float("nan")), torch.rand(3, 2, 2))
    with pytest.raises(xc.ConfigError, match="metric"):
        xc.create("matcher", "mutual_nn", metric="l1")
