"""Soft-argmax keypoint transfer: a literal reference of the authors' algorithm, exact peaks,
and the shipped CHM moving an image's grid onto itself."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xcorr_chm_corr.transfer import (attention_weights, cell_centres, default_radius, default_sigma, normalise_points,
                                     soft_argmax_points, transfer_points, unnormalise_points)


def reference_transfer(corr: np.ndarray, kps: np.ndarray, side: int, sigma: float, thres: float) -> np.ndarray:
    """The authors' Geometry.transfer_kps, one loop per source cell and keypoint (numpy, float64)."""
    g = np.linspace(-1, 1, side)
    out = np.zeros_like(kps)
    for b in range(corr.shape[0]):
        pred = np.zeros((side * side, 2))
        for s in range(side * side):
            row = corr[b, s]
            c = int(np.argmax(row))
            cy, cx = divmod(c, side)
            w = np.array([np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)) for y in range(side) for x in range(side)])
            z = w * row
            pdf = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            pred[s] = [(pdf * np.tile(g, side)).sum(), (pdf * np.repeat(g, side)).sum()]
        for p, (x, y) in enumerate(kps[b]):
            d = np.array([np.sqrt((g[j] - x) ** 2 + (g[i] - y) ** 2 + 1e-5) for i in range(side) for j in range(side)])
            a = np.clip(thres - d, 0, None)
            a = a / a.sum()
            out[b, p] = (a[:, None] * pred).sum(0)
    return out


@given(st.integers(0, 500), st.sampled_from([6, 9]))
def test_transfer_equals_reference(seed, side):
    rng = np.random.default_rng(seed)
    corr = rng.random((2, side * side, side * side)) ** 4 * 3
    kps = rng.uniform(-0.95, 0.95, (2, 4, 2))
    sigma, radius = default_sigma(side), 0.4
    ours = transfer_points(torch.from_numpy(corr), torch.from_numpy(kps), side, sigma=sigma, radius=radius)
    assert np.allclose(ours.numpy(), reference_transfer(corr, kps, side, sigma, radius), atol=1e-10)


def test_authors_defaults_at_240px():
    assert default_sigma(30) == 17 and default_radius(30) == pytest.approx(0.1)
    pts = torch.tensor([[[120.0, 120.0], [0.0, 240.0]]])
    n = normalise_points(pts, (240, 240))
    assert torch.equal(n, torch.tensor([[[0.0, 0.0], [-1.0, 1.0]]]))
    assert torch.equal(unnormalise_points(n, (240, 240)), pts)


def test_soft_argmax_is_exact_on_a_known_peak():
    side = 8
    target = torch.randint(side * side, (side * side,), generator=torch.Generator().manual_seed(0))
    corr = torch.zeros(1, side * side, side * side, dtype=torch.float64)
    corr[0, torch.arange(side * side), target] = 60.0  # softmax(60 * 1) vs softmax(0): mass ~1 - 1e-24 on the peak
    pts = soft_argmax_points(corr, side)
    assert torch.allclose(pts[0], cell_centres(side, dtype=torch.float64)[target], atol=1e-12)
    # a point at a cell centre with a radius inside one cell spacing takes that cell's prediction alone
    centres = cell_centres(side, dtype=torch.float64)
    moved = transfer_points(corr, centres[None], side, radius=0.5 * 2 / (side - 1))
    assert torch.allclose(moved[0], centres[target], atol=1e-12)


def test_attention_weights_sum_to_one_and_never_nan():
    pts = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [0.3, 0.77]]])
    for radius in (0.05, 0.1, 0.5):  # 0.05 on a 14 grid leaves points with no cell in reach: nearest cell
        w = attention_weights(pts, 14, radius)
        assert torch.allclose(w.sum(-1), torch.ones(1, 3)) and bool(torch.isfinite(w).all())


def test_shipped_chm_transfers_an_image_onto_itself():
    """On the bird (where its training keypoints lie) the shipped CHM maps an image onto itself:
    grid points inside the box within one embedding cell, keypoints within one CHM cell.
    Background points are not held to it: with no keypoints there in training, the nearly
    flat soft-argmax pulls them toward the bird (see the docs page)."""
    from xcorr_core.data import SynthBirds
    from xcorr_chm_corr import load_pretrained

    chm = load_pretrained()
    ds = SynthBirds("test", per_class=1)
    n = 12
    imgs = ds.images[:n].float() / 255
    grid = unnormalise_points(cell_centres(14), (112, 112))  # the 14 x 14 CHM grid in pixels
    kps = ds.keypoints[:n]
    with torch.no_grad():
        moved = chm.transfer(imgs, imgs, grid.expand(n, -1, -1).contiguous())
        moved_kp = chm.transfer(imgs, imgs, kps[..., :2].contiguous())
    b = ds.boxes[:n, None]
    inside = (grid[None, :, 0] >= b[..., 0]) & (grid[None, :, 0] < b[..., 2]) & (grid[None, :, 1] >= b[..., 1]) & (grid[None, :, 1] < b[..., 3])
    err = (moved - grid).norm(dim=-1)[inside]
    assert float((err <= 112 / 7).float().mean()) >= 0.9, float(err.median())
    kp_err = (moved_kp - kps[..., :2]).norm(dim=-1)[kps[..., 2] > 0]
    assert float((kp_err <= 112 / 14).float().mean()) >= 0.85 and float(kp_err.median()) < 4, float(kp_err.median())
