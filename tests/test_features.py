"""FeatureExtractor: captures the right tensors, never changes the model, cleans up its hooks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import xcorr_core as xc
from xcorr_core.models import SmallResNet


def _manual(model: SmallResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    h = model.relu(model.bn1(model.conv1((x - model.mean) / model.std)))
    out = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(model, name)(h)
        out[name] = h
    return out


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_maps_and_pooled_match_a_manual_forward(tiny_model: SmallResNet) -> None:
    x = torch.rand(3, 3, 112, 112)
    f = xc.FeatureExtractor(tiny_model, ["layer3", "layer4"])(x)
    ref = _manual(tiny_model, x)
    assert f.maps["layer4"].shape == (3, 256, 7, 7) and f.maps["layer3"].shape == (3, 128, 14, 14)
    torch.testing.assert_close(f.maps["layer4"], ref["layer4"])
    torch.testing.assert_close(f.pooled["layer3"], ref["layer3"].mean((2, 3)))
    assert f.output is None  # stopped early
    full = xc.FeatureExtractor(tiny_model, ["layer4"])(x, return_output=True)
    torch.testing.assert_close(full.output, tiny_model(x))


def test_model_mode_and_hooks_untouched(tiny_model: SmallResNet) -> None:
    model = SmallResNet(5).train()
    before = _hook_count(model)
    xc.FeatureExtractor(model, ["layer2"])(torch.rand(2, 3, 64, 64))
    assert model.training and all(m.training for m in model.modules())
    assert _hook_count(model) == before


def test_hooks_removed_when_forward_raises() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)
            self.b = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            self.a(x)
            raise RuntimeError("user bug")

    m = Boom()
    fx = xc.FeatureExtractor(m, ["b"])
    with pytest.raises(RuntimeError, match="user bug"):
        fx(torch.rand(1, 3, 8, 8))
    assert _hook_count(m) == 0


def test_layer_not_executed_is_an_error() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(xc.InputError, match="not executed"):
        xc.FeatureExtractor(Skip(), ["unused"])(torch.rand(1, 3, 4, 4))


def test_wrong_layer_name_lists_valid_names(tiny_model: SmallResNet) -> None:
    with pytest.raises(xc.LayerNotFoundError) as e:
        xc.FeatureExtractor(tiny_model, ["layer5"])
    msg = str(e.value)
    assert "'layer5'" in msg and "layer4" in msg and "layer1.conv1" in msg and "Did you mean" in msg
    with pytest.raises(xc.InputError):
        xc.FeatureExtractor(tiny_model, [])


@pytest.mark.parametrize("bad, match", [
    (torch.rand(3, 112, 112), "4 dimensions"),
    (torch.randint(0, 255, (1, 3, 32, 32)), "floating"),
    (torch.full((1, 3, 32, 32), float("nan")), "NaN/inf"),
])
def test_bad_images(tiny_model: SmallResNet, bad, match) -> None:
    with pytest.raises(xc.InputError, match=match):
        xc.FeatureExtractor(tiny_model, ["layer4"])(bad)


def test_extract_over_dataset_equals_batches(tiny_model: SmallResNet, tiny_birds) -> None:
    train, _ = tiny_birds
    fx = xc.FeatureExtractor(tiny_model, ["layer4"])
    whole = fx.extract(train, batch_size=7, progress=False, keep_maps=True, map_dtype=torch.float16)
    direct = fx(train.images[:10].float() / 255)
    assert whole.pooled["layer4"].shape == (len(train), 256)
    torch.testing.assert_close(whole.pooled["layer4"][:10], direct.pooled["layer4"], atol=1e-5, rtol=1e-4)
    assert whole.maps["layer4"].dtype == torch.float16
    none = fx.extract(train.images[:5].float() / 255, keep_maps=False, progress=False)
    assert none.maps == {} and len(none) == 5


def test_grad_mode_keeps_graph(tiny_model: SmallResNet) -> None:
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    f = xc.FeatureExtractor(tiny_model, ["layer3"], grad=True)(x)
    f.pooled["layer3"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not xc.FeatureExtractor(tiny_model, ["layer3"])(x).maps["layer3"].requires_grad
