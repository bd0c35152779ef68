"""The tested matrix of docs/your-own-model.md: small random-weight backbones from torchvision, timm,
Hugging Face and open_clip (built from configs, no download) times each plugin's entry point. Every
cell works, or gives its documented clear error. Plugins are used where installed (`make test`
installs them all); a missing one skips its cells."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import xcorr_core as xc
from xcorr_core import FeatureExtractor

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
import torchvision  # noqa: E402

warnings.filterwarnings("ignore", message=".*pretrained.*")


def _hf_layer(model: nn.Module, suffix: str) -> str:
    return next(n for n, _ in model.named_modules() if n.endswith(suffix))


def _small_hf() -> dict[str, Any]:
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _random_head(vit: nn.Module) -> nn.Module:
    nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision initialises it to zero: every gradient would vanish
    return vit


def _tiny_open_clip() -> nn.Module:
    open_clip = pytest.importorskip("open_clip")
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1}}
    open_clip.factory._MODEL_CONFIGS["xcorr-tiny-clip"] = cfg
    return open_clip.create_model("xcorr-tiny-clip", pretrained=None).visual


# name -> (builder, layer, side, is a classifier with a known g)
BACKBONES: dict[str, tuple[Callable[[], nn.Module], str, int, bool]] = {
    "torchvision_resnet18": (lambda: torchvision.models.resnet18(num_classes=5), "layer3", 64, True),
    "timm_efficientnet_b0": (lambda: timm.create_model("efficientnet_b0", num_classes=5), "blocks.4", 64, True),
    "timm_convnext_atto": (lambda: timm.create_model("convnext_atto", num_classes=5), "stages.2", 64, True),
    "timm_vit": (lambda: timm.create_model("vit_tiny_patch16_224", img_size=64, depth=3, embed_dim=48, num_heads=3, num_classes=5),
                 "blocks.1", 64, True),
    "timm_deit_distilled": (lambda: timm.create_model("deit_tiny_distilled_patch16_224", img_size=64, depth=3, num_classes=5),
                            "blocks.1", 64, True),
    "timm_swin": (lambda: timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4, depths=(1, 1, 1, 1),
                                            embed_dim=16, num_heads=(1, 1, 2, 2), num_classes=5), "layers.1", 64, True),
    "torchvision_vit": (lambda: _random_head(torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=3,
                                                                                  num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5)),
                        "encoder.layers.encoder_layer_1", 64, True),
    "torchvision_swin": (lambda: torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1, 1],
                                                                    num_heads=[1, 1, 2, 2], window_size=[4, 4], num_classes=5),
                         "features.3", 64, False),
    "hf_vit": (lambda: transformers.ViTForImageClassification(transformers.ViTConfig(image_size=64, patch_size=16, num_labels=5,
                                                                                     **_small_hf())), "layers.0", 64, False),
    "hf_dinov2": (lambda: transformers.Dinov2Model(transformers.Dinov2Config(image_size=56, patch_size=14, **_small_hf())),
                  "layer.0", 56, False),
    "hf_swin": (lambda: transformers.SwinModel(transformers.SwinConfig(image_size=64, embed_dim=16, depths=[1, 1], num_heads=[1, 1],
                                                                      window_size=4)), "encoder.layers.0", 64, False),
    "hf_clip_vision": (lambda: transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        image_size=64, patch_size=16, projection_dim=8, **_small_hf())), "layers.0", 64, False),
    "open_clip_vit": (_tiny_open_clip, "transformer.resblocks.0", 64, False),
}
CLASSIFIERS = {"torchvision_resnet18", "timm_efficientnet_b0", "timm_convnext_atto", "timm_vit", "timm_deit_distilled", "timm_swin", "torchvision_vit",
               "torchvision_swin", "hf_vit"}


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[nn.Module, str, torch.Tensor]]:
    out = {}
    for name, (make, layer, side, _) in BACKBONES.items():
        torch.manual_seed(0)
        model = make().eval()
        layer = layer if layer in dict(model.named_modules()) else _hf_layer(model, layer)
        x = torch.rand(4, 3, side, side, generator=torch.Generator().manual_seed(1))
        out[name] = (model, layer, x)
    return out


def _need(kind: str, name: str) -> None:
    if name not in {c.name for c in xc.components(kind)}:
        pytest.skip(f"{kind} {name!r} is not installed")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_features_emd_corr_and_chm_corr(name: str, built, all_plugins) -> None:
    model, layer, x = built[name]
    f = FeatureExtractor(model, [layer])(x)
    maps, pooled = f.maps[layer], f.pooled[layer]
    assert maps.ndim == 4 and pooled.shape == (4, maps.shape[1]) and bool(torch.isfinite(maps).all())
    _need("reranker", "emd_corr")
    r = xc.create("reranker", "emd_corr").rerank(maps[0], maps[1:])
    assert sorted(r.order.tolist()) == [0, 1, 2] and int(r.pairs.max()) < maps.shape[2] * maps.shape[3]
    _need("reranker", "chm_corr")
    if maps.shape[1] != 256:
        with pytest.raises(xc.InputError, match="needs a head of its own"):
            xc.create("reranker", "chm_corr").rerank(maps[0], maps[1:])


@pytest.mark.parametrize("name", list(BACKBONES))
def test_protoknn_profiles(name: str, built) -> None:
    pk = pytest.importorskip("xcorr_protoknn")
    model, layer, x = built[name]
    c = FeatureExtractor(model, [layer])(x[:1]).maps[layer].shape[1]
    net = pk.ProtoKNNNet(model, layer, c, dim=16, prototypes=8, prototype_steps=5).eval()
    with torch.no_grad():
        out = net.outputs(x)
    assert out.profiles.shape == (4, 8) and bool(torch.isfinite(out.profiles).all())


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_gradcam(name: str, built) -> None:
    cgc = pytest.importorskip("xcorr_cgc")
    model, layer, x = built[name]
    lm = cgc.layer_maps(model, x, layer)
    grid = FeatureExtractor(model, [layer])(x[:1]).maps[layer].shape[-2:]
    assert lm.maps.shape == (4, *grid) and bool(torch.isfinite(lm.maps).all()) and float(lm.maps.std()) > 0


@pytest.mark.parametrize("name", list(BACKBONES))
def test_pairx(name: str, built) -> None:
    px = pytest.importorskip("xcorr_pairx")
    model, layer, x = built[name]
    exp = px.explain_pair(model, x[0], x[1], layer=layer, n=3)
    assert exp.matches.shape[1] == 2 and 1 <= exp.matches.shape[0] <= 3
    assert bool(torch.isfinite(exp.pixel_maps_a).all()) and float(exp.pixel_maps_a.std()) > 0


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_counterfactual_split(name: str, built) -> None:
    scc = pytest.importorskip("xcorr_scc_counterfactual")
    model, layer, x = built[name]
    if not BACKBONES[name][3]:
        with pytest.raises(xc.InputError, match="pass g="):
            scc.split_model(model, layer)
        return
    split = scc.split_model(model, layer)
    with torch.no_grad():
        torch.testing.assert_close(split.logits(split.features(x)), model(x), rtol=1e-5, atol=1e-5)
