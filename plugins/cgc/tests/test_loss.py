import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import xcorr_core as xc
from xcorr_cgc import CGCConfig, CGCLoss, ViewsConfig, info_nce, make_views, paper_total
from xcorr_cgc.heatmaps import layer_maps, normalise_mass


def direct_info_nce(za, zo, t):
    b = za.shape[0]
    total = 0.0
    for i in range(b):
        logits = [float(za[i] @ zo[i]) / t] + [float(za[i] @ za[k]) / t for k in range(b) if k != i]
        total += -logits[0] + float(torch.logsumexp(torch.tensor(logits, dtype=torch.float64), 0))
    return total / b


@given(b=st.integers(2, 6), d=st.integers(1, 9), t=st.floats(0.05, 2.0), seed=st.integers(0, 1000))
def test_info_nce_equals_direct_rows(b, d, t, seed):
    g = torch.Generator().manual_seed(seed)
    za = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    zo = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    assert float(info_nce(za, zo, t)) == pytest.approx(direct_info_nce(za, zo, t), rel=1e-9, abs=1e-9)


def _views(b=4, side=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, side, side, generator=g, dtype=dtype)
    v = make_views(x.float(), ViewsConfig(size=side, resize_ratio=1.0, scale=(0.3, 1.0)), g)
    return v.orig.to(dtype), v.aug.to(dtype), v.boxes, v.flips


class Functional(nn.Module):
    """Runs ``inner`` with some parameters replaced (hooks on inner modules still fire)."""

    def __init__(self, inner: nn.Module, params: dict) -> None:
        super().__init__()
        self.inner, self.params = inner, params

    def forward(self, x):
        return torch.func.functional_call(self.inner, self.params, (x,))


def test_gradcheck_of_the_loss_through_double_backprop(tiny):
    model = tiny.double()
    orig, aug, boxes, flips = _views(b=3, side=8, dtype=torch.float64)
    crit = CGCLoss(layer="inner.layer", temperature=0.5)
    names = ["mix.weight", "layer.weight", "fc.weight"]

    def fn(*ps):
        return crit(Functional(model, dict(zip(names, ps))), orig, aug, boxes, flips).loss

    inputs = tuple(dict(model.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_heatmaps_need_second_order_terms(tiny):
    """The loss gradient w.r.t. the conv after the layer is non-zero only through dy/dA (double backprop)."""
    orig, aug, boxes, flips = _views()
    out = CGCLoss(layer="layer")(tiny, orig, aug, boxes, flips)
    g = torch.autograd.grad(out.loss, tiny.mix.weight)[0]
    assert float(g.abs().sum()) > 0


class Pointwise(nn.Module):
    """1x1 convs with positive weights on positive inputs, then GAP + linear: the layer map is a linear,
    pointwise function of the pixel, so it commutes exactly with crop, bilinear resize and flip."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 5, 1)
        self.layer = nn.Conv2d(5, 4, 1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for m in (self.c1, self.layer, self.fc):
                m.weight.uniform_(0.1, 1.0)
                m.bias.uniform_(0.0, 0.5)

    def forward(self, x):
        return self.fc(self.layer(torch.relu(self.c1(x))).mean((2, 3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transformed_orig_map_equals_map_of_the_aug_image(seed):
    torch.manual_seed(seed)
    model = Pointwise()
    orig, aug, boxes, flips = _views(b=4, side=12, seed=seed)
    out = CGCLoss(layer="layer")(model, orig, aug, boxes, flips)
    torch.testing.assert_close(out.positive, torch.ones(4), atol=1e-5, rtol=0)
    za, zo = F.normalize(out.heat_aug.flatten(1), dim=1), F.normalize(out.heat_orig.flatten(1), dim=1)
    torch.testing.assert_close(za, zo, atol=1e-5, rtol=1e-4)


def test_positive_below_one_for_a_non_equivariant_model(tiny):
    orig, aug, boxes, flips = _views()
    out = CGCLoss(layer="layer")(tiny, orig, aug, boxes, flips)
    assert float(out.positive.max()) < 0.9999


def test_no_negatives_variant_is_mse(tiny):
    orig, aug, boxes, flips = _views()
    out = CGCLoss(layer="layer", negatives=False)(tiny, orig, aug, boxes, flips)
    za, zo = F.normalize(out.heat_aug.flatten(1), dim=1), F.normalize(out.heat_orig.flatten(1), dim=1)
    torch.testing.assert_close(out.loss, F.mse_loss(za, zo))
    one = CGCLoss(layer="layer", negatives=False)(tiny, orig[:1], aug[:1], boxes[:1], flips[:1])
    assert torch.isfinite(one.loss)


def test_loss_parts_and_paper_total(tiny):
    orig, aug, boxes, flips = _views()
    labels = torch.tensor([0, 1, 2, 0])
    out = CGCLoss(layer="layer")(tiny, orig, aug, boxes, flips)
    assert out.targets.tolist() == tiny(orig).argmax(1).tolist()
    torch.testing.assert_close(out.logits_orig, tiny(orig))
    lt = tiny(orig)
    want = F.cross_entropy(lt, labels) + F.cross_entropy(out.logits_orig, labels) + F.cross_entropy(out.logits_aug, labels) + 0.5 * out.loss
    torch.testing.assert_close(paper_total(lt, out, labels), want)
    torch.testing.assert_close(out.heat_aug.sum((1, 2)), torch.ones(4) + 64 * 1e-8, atol=1e-5, rtol=0)


@pytest.mark.parametrize("train", [True, False])
def test_train_and_eval_mode(train):
    from xcorr_core.models import SmallResNet

    torch.manual_seed(0)
    net = SmallResNet(4, widths=(8, 8, 16, 16)).train(train)
    orig, aug, boxes, flips = _views(b=3, side=32)
    out = CGCLoss()(net, orig, aug, boxes, flips)
    out.loss.backward()
    assert net.training is train and net.conv1.weight.grad is not None


def test_aug_map_uses_the_orig_target(tiny):
    orig, aug, boxes, flips = _views()
    out = CGCLoss(layer="layer")(tiny, orig, aug, boxes, flips)
    want = normalise_mass(layer_maps(tiny, aug, "layer", out.targets, kind="gradxact").maps)
    torch.testing.assert_close(out.heat_aug.detach(), want)
    other = normalise_mass(layer_maps(tiny, aug, "layer", kind="gradxact").maps)  # the aug view's own top-1
    if not torch.equal(tiny(aug).argmax(1), out.targets):
        assert not torch.allclose(out.heat_aug.detach(), other)


def test_errors(tiny):
    orig, aug, boxes, flips = _views()
    with pytest.raises(xc.InputError, match="at least 2"):
        CGCLoss(layer="layer")(tiny, orig[:1], aug[:1], boxes[:1], flips[:1])
    with pytest.raises(xc.InputError, match="spatial"):
        CGCLoss(layer="fc")(tiny, orig, aug, boxes, flips)
    with pytest.raises(xc.InputError, match="aug"):
        CGCLoss(layer="layer")(tiny, orig, aug[:, :, :4], boxes, flips)
    with pytest.raises(Exception, match="temperature"):
        CGCLoss(CGCConfig(temperature=0.0))
