"""CHM 4D / 6D layers against a naive loop over kernel offsets (float64), and the correlation pieces."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from xcorr_chm_corr.correlation import interpolate4d, mutual_nn_filter, scale_sides
from xcorr_chm_corr.layers import CHM4d, CHM6d, correlate4d, correlate6d


def naive4d(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    n, h1, w1, h2, w2 = x.shape
    k = K.shape[0]
    p = k // 2
    xp = F.pad(x, [p] * 8)
    out = torch.zeros_like(x)
    for a, b, c, d in itertools.product(range(k), repeat=4):
        out += K[a, b, c, d] * xp[:, a:a + h1, b:b + w1, c:c + h2, d:d + w2]
    return out


def naive6d(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    n, _, _, h1, w1, h2, w2 = x.shape
    k = K.shape[2]
    p = k // 2
    xp = F.pad(x, [p] * 8 + [1, 1, 1, 1])
    out = torch.zeros_like(x)
    for a, b, c, d, e, f in itertools.product(range(3), range(3), range(k), range(k), range(k), range(k)):
        out += K[a, b, c, d, e, f] * xp[:, a:a + 3, b:b + 3, c:c + h1, d:d + w1, e:e + h2, f:f + w2]
    return out


@given(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 999))
def test_correlate4d_equals_naive_loop(n, h1, w1, h2, w2, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h1, w1, h2, w2, generator=g, dtype=torch.float64)
    K = torch.randn(5, 5, 5, 5, generator=g, dtype=torch.float64)
    ref = naive4d(x, K)
    assert torch.allclose(correlate4d(x, K, method="fft"), ref, atol=1e-10)
    assert torch.allclose(correlate4d(x, K, method="direct"), ref, atol=1e-10)


def test_correlate6d_equals_naive_loop():
    for seed, shape in enumerate([(1, 3, 3, 2, 3, 3, 2), (2, 3, 3, 3, 3, 3, 3), (1, 3, 3, 4, 1, 2, 5), (1, 3, 3, 7, 6, 5, 7)]):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        K = torch.randn(3, 3, 5, 5, 5, 5, generator=g, dtype=torch.float64)
        ref = naive6d(x, K)
        for method in ("fft", "direct"):
            assert torch.allclose(correlate6d(x, K, method=method), ref, atol=1e-10), method


def test_fft_lengths_are_the_shortest_that_hold_the_window():
    """n + k // 2 is the shortest transform that holds the kept window [k // 2, k // 2 + n); the wrapped-around
    tail of the circular correlation must then fall outside it (equal to the naive loop)."""
    from xcorr_chm_corr import layers

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 5, 7, 4, generator=g, dtype=torch.float64)
    K = torch.randn(5, 5, 5, 5, generator=g, dtype=torch.float64)
    assert layers._fft_lengths((6, 5, 7, 4), 5) == [8, 7, 9, 6]
    assert layers._fft_lengths((1, 2, 3, 9), 5) == [5, 5, 5, 11]  # the kernel must fit too
    spec = layers._spectrum4d(x, [8, 7, 9, 6]) * layers._spectrum4d(K.flip(0, 1, 2, 3), [8, 7, 9, 6])
    assert torch.allclose(layers._inverse4d(spec, [8, 7, 9, 6], (6, 5, 7, 4), 2), naive4d(x, K), atol=1e-10)


def test_fft_correlations_keep_gradients_of_the_direct_ones():
    torch.manual_seed(1)
    x6 = torch.randn(1, 3, 3, 3, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    K6 = torch.randn(3, 3, 5, 5, 5, 5, dtype=torch.float64, requires_grad=True)
    grads = []
    for method in ("fft", "direct"):
        (correlate6d(x6, K6, method=method) ** 2).sum().backward()
        grads.append((x6.grad.clone(), K6.grad.clone()))
        x6.grad, K6.grad = None, None
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-10) and torch.allclose(grads[0][1], grads[1][1], atol=1e-10)


def test_layers_use_their_psi_kernels_and_bias():
    torch.manual_seed(0)
    m4, m6 = CHM4d().double(), CHM6d().double()
    x4 = torch.randn(2, 3, 3, 3, 3, dtype=torch.float64)
    x6 = torch.randn(1, 3, 3, 3, 2, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(m4(x4), naive4d(x4, m4.kernel()) + m4.bias, atol=1e-12)
        assert torch.allclose(m6(x6), naive6d(x6, m6.kernel()) + m6.bias, atol=1e-12)
    assert [p.numel() for p in m6.param] == [55] * 4 and m4.weight.numel() == 55
    assert sum(p.numel() for p in m6.parameters()) + sum(p.numel() for p in m4.parameters()) == 277
    # init: positive entries around 1e-3
    k = m6.kernel().detach()
    assert bool((k > 0).all()) and 1e-5 < float(k.mean()) < 1e-2


def test_layers_backpropagate_to_shared_weights():
    m = CHM4d()
    m(torch.rand(1, 3, 3, 3, 3)).sum().backward()
    assert m.weight.grad is not None and bool(torch.isfinite(m.weight.grad).all()) and float(m.weight.grad.abs().sum()) > 0


def test_scale_sides_and_interpolate4d():
    assert scale_sides(15, (0.5, 1, 2)) == [11, 15, 21]
    assert scale_sides(7, (0.5, 1, 2)) == [5, 7, 10]
    x = torch.rand(2, 3, 4, 5, 2)
    y = interpolate4d(x, 6)
    assert y.shape == (2, 6, 6, 6, 6)
    # align_corners=True keeps the corner values
    assert torch.allclose(y[:, 0, 0, 0, 0], x[:, 0, 0, 0, 0]) and torch.allclose(y[:, -1, -1, -1, -1], x[:, -1, -1, -1, -1])
    # separable: resizing a tensor constant along the target axes gives the 2D resize of the source axes
    src = torch.rand(1, 3, 4)
    const = src[..., None, None].expand(1, 3, 4, 2, 2)
    want = F.interpolate(src[:, None], (6, 6), mode="bilinear", align_corners=True)[:, 0]
    assert torch.allclose(interpolate4d(const, 6)[..., 0, 0], want, atol=1e-6)


def test_mutual_nn_filter_against_brute_force():
    g = torch.Generator().manual_seed(3)
    c = torch.rand(2, 5, 6, generator=g, dtype=torch.float64)
    c[1, 2] = 0  # a zero row: its maximum becomes 1e-30 and the row stays 0
    out = mutual_nn_filter(c)
    ref = torch.zeros_like(c)
    for b in range(2):
        for i in range(5):
            for j in range(6):
                rmax = max(float(c[b, i].max()), 0) or 1e-30
                cmax = max(float(c[b, :, j].max()), 0) or 1e-30
                ref[b, i, j] = c[b, i, j] * (c[b, i, j] / rmax) * (c[b, i, j] / cmax)
    assert torch.allclose(out, ref) and bool(torch.isfinite(out).all())


def test_precomputed_candidate_scale_features_give_the_same_transfers():
    """chm_transfers with the candidates' scale features computed once (as the demo does per gallery image)
    equals the per-chunk computation; a wrong shape is refused."""
    from xcorr_core.errors import InputError
    from xcorr_chm_corr import load_pretrained
    from xcorr_chm_corr.correlation import correlation6d
    from xcorr_chm_corr.rerank import chm_cells, chm_transfers

    chm = load_pretrained()
    g = torch.Generator().manual_seed(5)
    q, cands = torch.randn(2, 256, 7, 7, generator=g).relu_(), torch.randn(2, 30, 256, 7, 7, generator=g).relu_()
    with torch.no_grad():
        scales = [t.unflatten(0, (2, 30)) for t in chm.learner.scale_features(cands.flatten(0, 1))]
        L = chm.learner
        direct = correlation6d(q[:1], cands[0], L.scales, L.conv2ds)
        given = correlation6d(q[:1], cands[0], L.scales, L.conv2ds, [t[0] for t in scales])
    torch.testing.assert_close(given, direct, rtol=1e-5, atol=1e-6)
    a = chm_transfers(chm, q, cands, chunk=25)
    b = chm_transfers(chm, q, cands, chunk=25, cand_scales=scales)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert torch.equal(chm_cells(chm, q, cands, cand_scales=scales), chm_cells(chm, q, cands))
    with pytest.raises(InputError, match="cand_scales"):
        chm_transfers(chm, q, cands, cand_scales=[t[:, :10] for t in scales])
    with pytest.raises(InputError, match="cand_scales"):
        chm_transfers(chm, q, cands, cand_scales=scales[:2])
