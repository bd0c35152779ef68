"""f | g cuts reproduce the model, leave it untouched, and refuse what they cannot do."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import xcorr_core as xc
from xcorr_core.models import load_pretrained, torchvision_backbone
from xcorr_scc_counterfactual import PoolLinear, split_model


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("arch,layer,linear", [
    ("birds", "layer4", True), ("birds", "layer3", False),
    ("resnet18", "layer4", True), ("resnet18", "layer4.0", False), ("resnet18", "layer2.1", False),
    ("vgg11", "features", False), ("vgg11", "features.15", False),
])
def test_g_of_f_is_the_model(arch, layer, linear):
    torch.manual_seed(0)
    if arch == "birds":
        model, size = load_pretrained("birds"), 112
    else:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=7).eval()
        size = 224 if layer == "features" else 64  # VGG's classifier reads a 7x7 map directly at 224 px
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, size, size)
    split = split_model(model, layer)
    with torch.no_grad():
        out = split.logits(split.features(x))
        ref = model(x)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert (split.linear_head is not None) == linear
    assert (split.first_linear(tuple(split.features(x).shape[1:])) is not None) == (layer == "features")  # VGG's classifier
    assert _hooks(model) == 0 and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_baked_in_normalisation_still_applies(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None, num_classes=5)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    model = torchvision_backbone("resnet18", tmp_path / "r18.pt", num_classes=5, normalize=True)
    split = split_model(model, "layer4")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(split.logits(split.features(x)), model(x), atol=1e-4)


def test_unknown_architecture_and_bad_layers():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.raises(xc.InputError, match="pass g="):
        split_model(seq, "1")
    split = split_model(seq, "1", g=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), seq[4]))
    assert split.linear_head is not None  # pooling + linear recognised in a user's Sequential
    with pytest.raises(xc.LayerNotFoundError):
        split_model(load_pretrained("birds"), "layer9")
    with pytest.raises(xc.LayerNotFoundError, match="stage or block"):
        split_model(load_pretrained("birds"), "layer4.conv1")
    with pytest.raises(xc.InputError, match="embedding"):
        split_model(load_pretrained("herd"), "layer4")
    assert isinstance(split_model(load_pretrained("birds"), "layer4").g, PoolLinear)


def test_named_split_presets():
    from xcorr_scc_counterfactual import SPLIT_PRESETS

    r18 = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    vgg = torchvision.models.vgg11(weights=None, num_classes=7).eval()
    assert split_model(r18, "paper").layer == "layer4.0" == SPLIT_PRESETS["paper"]["resnet"]
    assert split_model(vgg, "paper").layer == "features"
    closed = split_model(r18, "closed_form")
    assert closed.layer == "layer4" and closed.linear_head is not None  # g = pooling + linear
    assert split_model(r18, "paper").linear_head is None  # the paper's g is non-linear
    assert not split_model(r18, "paper").training  # the chain's own containers do not count as training
    with pytest.raises(xc.InputError, match="closed_form"):
        split_model(vgg, "closed_form")
