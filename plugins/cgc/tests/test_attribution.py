import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import xcorr_core as xc
from xcorr_cgc import blur, consistency, content_heatmap, curve_auc, eval_mode, insertion_deletion, rise_blur_kernel


@given(h=st.integers(2, 12), w=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_content_heatmap_equals_mask_sum_for_integer_boxes(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(3, h, w, generator=g) - 0.2  # some negatives: clipped
    boxes = []
    for _ in range(3):
        x0, y0 = int(torch.randint(0, w, (1,), generator=g)), int(torch.randint(0, h, (1,), generator=g))
        x1, y1 = int(torch.randint(x0 + 1, w + 1, (1,), generator=g)), int(torch.randint(y0 + 1, h + 1, (1,), generator=g))
        boxes.append([x0, y0, x1, y1])
    got = content_heatmap(maps, torch.tensor(boxes, dtype=torch.float32))
    for m, (x0, y0, x1, y1), v in zip(maps.clamp_min(0), boxes, got.tolist()):
        want = 100 * float(m[y0:y1, x0:x1].sum() / m.sum()) if float(m.sum()) > 0 else math.nan
        assert v == pytest.approx(want, rel=1e-5, abs=1e-4) or (math.isnan(v) and math.isnan(want))


def test_content_heatmap_inside_proportional_and_zero_mass():
    m = torch.zeros(3, 10, 10)
    m[0, 2:5, 3:6] = 1.0  # entirely inside the box
    m[1] = 1.0  # uniform: CH = box area / image area
    boxes = torch.tensor([[3.0, 2, 6, 5], [0.0, 0, 5, 4], [0.0, 0, 5, 5]])
    ch = content_heatmap(m, boxes)
    assert ch[0] == pytest.approx(100.0) and ch[1] == pytest.approx(20.0) and math.isnan(float(ch[2]))
    half = content_heatmap(torch.ones(1, 4, 4), torch.tensor([[0.0, 0.0, 2.5, 4.0]]))  # fractional pixel coverage
    assert float(half[0]) == pytest.approx(100 * 2.5 / 4)
    res = xc.create("metric", "content_heatmap").compute(maps=m, boxes=boxes)
    assert res.value == pytest.approx(60.0) and res.n == 2 and res.details["left_out"] == 1 and res.per_sample.shape == (3,)


def test_content_heatmap_union_of_boxes():
    m = torch.ones(1, 4, 4)
    ch = content_heatmap(m, [torch.tensor([[0.0, 0, 2, 2], [1.0, 1, 3, 3]])])  # 4 + 4 - 1 overlap = 7 px
    assert float(ch[0]) == pytest.approx(100 * 7 / 16)


def test_content_heatmap_bad_input():
    with pytest.raises(xc.InputError, match="inside"):
        content_heatmap(torch.rand(1, 4, 4), torch.tensor([[0.0, 0, 5, 4]]))
    with pytest.raises(xc.InputError, match="non-empty"):
        content_heatmap(torch.rand(1, 4, 4), torch.tensor([[2.0, 0, 2, 4]]))
    with pytest.raises(xc.InputError, match="maps"):
        content_heatmap(torch.rand(4, 4), torch.tensor([[0.0, 0, 2, 2]]))
    with pytest.raises(xc.InputError, match="boxes"):
        content_heatmap(torch.rand(2, 4, 4), torch.tensor([[0.0, 0, 2, 2]]))
    with pytest.raises(xc.InputError, match="no sample could be scored: every map has zero mass"):
        xc.create("metric", "content_heatmap").compute(maps=torch.zeros(2, 4, 4), boxes=torch.tensor([[0.0, 0, 2, 2]] * 2))


def test_rise_kernel_matches_scipy():
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    want = gaussian_filter(delta, 5)
    got = rise_blur_kernel()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
    assert float(got.sum()) == pytest.approx(1.0, abs=1e-6)


def test_blur_is_depthwise_conv():
    x = torch.rand(2, 3, 9, 9)
    k = rise_blur_kernel()
    y = blur(x)
    ref = torch.stack([torch.nn.functional.conv2d(x[:, c:c + 1], k[None, None], padding=5)[:, 0] for c in range(3)], 1)
    torch.testing.assert_close(y, ref)


class Soft(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def reference_curve(model, image, sal, mode, steps, substrate):
    """One image, one forward per step (the RISE loop)."""
    h, w = image.shape[-2:]
    order = torch.sort(sal.flatten(), descending=True, stable=True).indices
    per = math.ceil(h * w / steps)
    with torch.no_grad():
        cls = int(model(image[None]).argmax(1))
        cur = (substrate if mode == "insertion" else image).clone()
        fin = image if mode == "insertion" else substrate
        scores = []
        for i in range(steps + 1):
            scores.append(float(model(cur[None]).softmax(1)[0, cls]))
            idx = order[per * i:per * (i + 1)]
            cur.view(3, -1)[:, idx] = fin.reshape(3, -1)[:, idx]
    return np.array(scores)


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_insertion_deletion_equal_step_loop(mode, batch_size):
    torch.manual_seed(0)
    model = Soft().eval()
    x = torch.rand(5, 3, 10, 10)
    maps = torch.rand(5, 10, 10)
    maps[0] = 0.5  # all ties: the curve follows the stable order; the AUC is NaN (no attribution order to score)
    auc, curves, classes = insertion_deletion(model, x, maps, mode=mode, steps=7, batch_size=batch_size)
    sub = blur(x)
    for b in range(5):
        ref = reference_curve(model, x[b], maps[b], mode, 7, sub[b])
        np.testing.assert_allclose(curves[b].numpy(), ref, rtol=1e-5, atol=1e-6)
        if b == 0:
            assert math.isnan(float(auc[b]))
        else:
            assert float(auc[b]) == pytest.approx(float(np.trapezoid(ref, dx=1 / 7)), rel=1e-5)
    clean = model(x).softmax(1).gather(1, classes[:, None])[:, 0]
    end = curves[:, -1] if mode == "insertion" else curves[:, 0]
    torch.testing.assert_close(end, clean.detach())


def test_low_resolution_maps_are_upsampled():
    torch.manual_seed(0)
    model = Soft().eval()
    x = torch.rand(2, 3, 8, 8)
    small = torch.rand(2, 2, 2)
    big = torch.nn.functional.interpolate(small[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(insertion_deletion(model, x, small)[0], insertion_deletion(model, x, big)[0])


def test_metric_components_restore_train_mode_and_give_per_image_values():
    torch.manual_seed(0)
    model = Soft().train()
    x, maps = torch.rand(3, 3, 8, 8), torch.rand(3, 8, 8)
    ins = xc.create("metric", "insertion_auc", steps=4).compute(model=model, images=x, maps=maps)
    dele = xc.create("metric", "deletion_auc", steps=4).compute(model=model, images=x, maps=maps)
    assert model.training and ins.per_sample.shape == (3,) and dele.per_sample.shape == (3,)
    assert len(ins.details["mean_curve"]) == 5
    with pytest.raises(xc.InputError, match="model"):
        xc.create("metric", "insertion_auc").compute(model=None, images=x, maps=maps)
    with pytest.raises(xc.InputError, match="one per image"):
        xc.create("metric", "deletion_auc").compute(model=model, images=x, maps=maps[:2])
    with pytest.raises(xc.InputError, match="maps"):
        xc.create("metric", "insertion_auc").compute(model=model, images=x, maps=maps[:, None])


def test_eval_mode_restores_even_on_error():
    model = Soft().train()
    model.bn.eval()
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not model.training
            raise RuntimeError
    assert model.training and not model.bn.training


def test_curve_auc_trapezoid():
    c = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(curve_auc(c), torch.tensor([0.75, 1.0]))


def test_consistency_metric():
    m = torch.rand(3, 8, 8)
    boxes = torch.tensor([[0.0, 0, 8, 8]] * 3)
    flips = torch.tensor([True, False, True])
    aug = torch.stack([m[0].flip(-1), m[1], m[2]])
    per = consistency(aug, m, boxes, flips)
    assert per[0] == pytest.approx(1.0) and per[1] == pytest.approx(1.0) and per[2] < 1.0
    res = xc.create("metric", "explanation_consistency").compute(maps_orig=m, maps_aug=aug, boxes=boxes, flips=flips)
    assert res.n == 3 and res.per_sample.shape == (3,)
    zero = consistency(torch.zeros(1, 8, 8), m[:1], boxes[:1], flips[:1])
    assert math.isnan(float(zero[0]))


def test_typed_errors_for_a_bad_temperature_and_an_empty_box_list() -> None:
    from xcorr_cgc.attribution import content_heatmap
    from xcorr_cgc.loss import CGCConfig, CGCLoss

    for make in (lambda: CGCConfig(temperature=0), lambda: CGCLoss(temperature=0)):
        with pytest.raises(xc.ConfigError, match="'temperature'") as info:
            make()
        assert info.value.field == "temperature"
    with pytest.raises(xc.InputError, match=r"boxes\[1\] holds no box"):
        content_heatmap(torch.rand(2, 7, 7), [torch.tensor([[0.0, 0.0, 3.0, 3.0]]), torch.zeros(0, 4)])


def test_load_pretrained_is_exported() -> None:
    import xcorr_cgc

    assert "load_pretrained" in xcorr_cgc.__all__ and xcorr_cgc.load_pretrained("ce").training is False


def test_non_finite_inputs_and_constant_maps() -> None:
    """Issue 27 item 3: NaN boxes gave a finite loss or 'no map had non-zero mass', NaN images were dropped
    from the AUC mean in silence, and a constant map's AUC depended on the raster order."""
    from xcorr_cgc.attribution import insertion_deletion
    from xcorr_cgc.views import transform_maps

    model = Soft().eval()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 8, generator=g)
    bad = images.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(xc.InputError, match="NaN"):
        insertion_deletion(model, bad, torch.rand(2, 8, 8, generator=g))
    with pytest.raises(xc.InputError, match="NaN"):
        xc.create("metric", "insertion_auc").compute(model=model, images=bad, maps=torch.rand(2, 8, 8, generator=g))
    # a constant map has no insertion order: NaN, the same for the image and its mirror, and counted as left out
    flat = torch.zeros(2, 8, 8)
    auc, _, _ = insertion_deletion(model, images, flat)
    auc_flipped, _, _ = insertion_deletion(model, images.flip(-1), flat)
    assert bool(auc.isnan().all()) and bool(auc_flipped.isnan().all())
    mixed = torch.stack([torch.zeros(8, 8), torch.rand(8, 8, generator=g)])
    res = xc.create("metric", "deletion_auc").compute(model=model, images=images, maps=mixed)
    assert res.details["left_out"] == 1 and res.n == 1
    with pytest.raises(xc.InputError, match="every map is constant"):
        xc.create("metric", "insertion_auc").compute(model=model, images=images, maps=flat)
    nan_box = torch.tensor([[0.0, 0.0, float("nan"), 4.0], [0.0, 0.0, 4.0, 4.0]])
    with pytest.raises(xc.InputError, match="NaN"):
        content_heatmap(torch.rand(2, 8, 8, generator=g), nan_box)
    with pytest.raises(xc.InputError, match="NaN"):
        transform_maps(torch.rand(2, 8, 8, generator=g), torch.tensor([[0.0, 0.0, float("nan"), 4.0], [0, 0, 4, 4]]),
                       torch.zeros(2, dtype=torch.bool), 8)


def test_rise_metrics_refuse_0_255_images_for_the_shipped_models() -> None:
    from xcorr_cgc import load_pretrained

    model = load_pretrained("ce")
    x = torch.rand(2, 3, 112, 112)
    with pytest.raises(xc.InputError, match="divide by 255"):
        xc.create("metric", "insertion_auc", steps=4).compute(model=model, images=x * 255, maps=torch.rand(2, 7, 7))
