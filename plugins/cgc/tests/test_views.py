import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from xcorr_core.errors import InputError
from xcorr_cgc import CGCViews, ViewsConfig, crop_params, make_views, orig_view, transform_maps


def reference_transform(maps, boxes, flips, size):
    """The authors' per-image loop: slice, bilinear resize (align_corners=False), flip."""
    out = []
    for m, (i, j, h, w), f in zip(maps, boxes.long().tolist(), flips.tolist()):
        crop = m[..., i:i + h, j:j + w]
        r = F.interpolate(crop[None] if m.ndim == 3 else crop[None, None], size=(size, size), mode="bilinear", align_corners=False)[0]
        r = r if m.ndim == 3 else r[0]
        out.append(r.flip(-1) if f else r)
    return torch.stack(out)


@given(side=st.integers(4, 20), size=st.integers(3, 24), seed=st.integers(0, 10_000), channels=st.sampled_from([0, 2]))
def test_transform_equals_per_image_slice_resize_flip(side, size, seed, channels):
    g = torch.Generator().manual_seed(seed)
    b = 3
    maps = torch.rand((b, side, side) if channels == 0 else (b, channels, side, side), generator=g, dtype=torch.float64)
    boxes = torch.tensor([crop_params(side, side, (0.05, 1.0), (0.5, 2.0), g) for _ in range(b)], dtype=torch.float64)
    flips = torch.rand(b, generator=g) < 0.5
    got = transform_maps(maps, boxes, flips, size)
    torch.testing.assert_close(got, reference_transform(maps, boxes, flips, size), atol=1e-12, rtol=1e-10)


@given(h=st.integers(1, 300), w=st.integers(1, 300), seed=st.integers(0, 1000))
def test_crop_params_inside_image(h, w, seed):
    i, j, ch, cw = crop_params(h, w, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed))
    assert 0 <= i and 0 <= j and ch >= 1 and cw >= 1 and i + ch <= h and j + cw <= w


def test_transform_identity_and_flip():
    m = torch.arange(16.0).view(1, 4, 4)
    box = torch.tensor([[0.0, 0, 4, 4]])
    torch.testing.assert_close(transform_maps(m, box, torch.tensor([False]), 4), m)
    torch.testing.assert_close(transform_maps(m, box, torch.tensor([True]), 4), m.flip(-1))


def test_transform_rejects_boxes_outside():
    with pytest.raises(InputError, match="inside"):
        transform_maps(torch.rand(1, 4, 4), torch.tensor([[2.0, 2, 3, 3]]), torch.tensor([False]), 4)
    with pytest.raises(InputError, match="boxes"):
        transform_maps(torch.rand(2, 4, 4), torch.tensor([[0.0, 0, 3, 3]]), torch.tensor([False, True]), 4)


def test_views_of_any_size_and_uint8():
    views = CGCViews(ViewsConfig(size=32), seed=0)
    img = (torch.rand(3, 50, 70) * 255).to(torch.uint8)
    v = views(img)
    assert v["train"].shape == v["orig"].shape == v["aug"].shape == (3, 32, 32)
    assert v["train"].dtype == torch.float32 and float(v["orig"].max()) <= 1.0
    torch.testing.assert_close(v["orig"], orig_view(img.float() / 255, 32))
    torch.testing.assert_close(v["aug"], transform_maps(v["orig"][None], v["box"][None], v["flip"][None], 32)[0])
    i, j, h, w = v["box"].tolist()
    assert i + h <= 32 and j + w <= 32


def test_collate_gives_batch_and_labels():
    views = CGCViews(ViewsConfig(size=16), seed=1)
    items = [(torch.rand(3, 20, 20), k) for k in range(4)]
    batch, labels = views.collate(items)
    assert batch.orig.shape == (4, 3, 16, 16) and batch.boxes.shape == (4, 4) and batch.flips.dtype == torch.bool
    assert labels.tolist() == [0, 1, 2, 3]


def test_make_views_seeded_and_consistent():
    x = torch.rand(5, 3, 24, 24)
    a = make_views(x, ViewsConfig(size=24, resize_ratio=1.0), torch.Generator().manual_seed(3))
    b = make_views(x, ViewsConfig(size=24, resize_ratio=1.0), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.aug, b.aug)
    torch.testing.assert_close(a.orig, x)
    torch.testing.assert_close(a.aug, transform_maps(x, a.boxes, a.flips, 24))


def test_views_reject_bad_image():
    with pytest.raises(InputError, match="image"):
        CGCViews(seed=0)(torch.rand(4, 10, 10))
