"""Layouts: every backbone family's layer outputs read as a `[B, C, h, w]` grid and a named pooled vector,
checked against the same tensors taken by hand from the layer's raw output; errors that say what to set."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import xcorr_core as xc
from xcorr_core import FeatureExtractor
from xcorr_core.layouts import Layout, LayoutError, detect_layout, from_grid, to_grid

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
torchvision = pytest.importorskip("torchvision")

warnings.filterwarnings("ignore", message=".*pretrained.*")


def _raw(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    out = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, o: out.__setitem__("o", o))
    with torch.no_grad():
        model(x)
    h.remove()
    o = out["o"]
    return o if isinstance(o, torch.Tensor) else o[0]


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def tiny_timm_vit(**kw) -> nn.Module:
    return timm.create_model("vit_tiny_patch16_224", img_size=64, depth=2, embed_dim=48, num_heads=3, num_classes=0, **kw).eval()


def test_timm_vit_tokens_become_the_patch_grid(x: torch.Tensor) -> None:
    vit = tiny_timm_vit()
    f = FeatureExtractor(vit, ["blocks.1"])(x)
    raw = _raw(vit, "blocks.1", x)  # [2, 1 + 16, 48]
    assert raw.shape == (2, 17, 48)
    grid = f.maps["blocks.1"]
    assert grid.shape == (2, 48, 4, 4)
    # row-major: cell (r, c) is patch token 1 + r * 4 + c
    assert torch.equal(grid[:, :, 1, 2], raw[:, 1 + 1 * 4 + 2])
    assert torch.equal(grid.flatten(2).transpose(1, 2), raw[:, 1:])
    assert torch.equal(f.pooled["blocks.1"], raw[:, 0])  # timm global_pool 'token': the CLS token
    assert f.layouts["blocks.1"] == Layout(kind="tokens", prefix_tokens=1, grid=(4, 4))
    mean = FeatureExtractor(vit, ["blocks.1"], pooling="mean")(x).pooled["blocks.1"]
    torch.testing.assert_close(mean, raw[:, 1:].mean(1))


def test_the_old_silent_pool_is_gone(x: torch.Tensor) -> None:
    """The old `_pool` averaged the last axis of `[B, N, C]`: `[B, N]`, channels gone, CLS as a cell."""
    vit = tiny_timm_vit(global_pool="avg")
    f = FeatureExtractor(vit, ["blocks.1"])(x)
    assert f.pooled["blocks.1"].shape == (2, 48)
    torch.testing.assert_close(f.pooled["blocks.1"], _raw(vit, "blocks.1", x)[:, 1:].mean(1))  # timm 'avg': mean patch token


def test_registers_and_distillation_tokens_are_prefix(x: torch.Tensor) -> None:
    reg = tiny_timm_vit(reg_tokens=4)
    assert FeatureExtractor(reg, ["blocks.0"])(x).layouts["blocks.0"].prefix_tokens == 5
    deit = timm.create_model("deit_tiny_distilled_patch16_224", img_size=64, depth=1, num_classes=0).eval()
    f = FeatureExtractor(deit, ["blocks.0"])(x)
    assert f.layouts["blocks.0"].prefix_tokens == 2 and f.maps["blocks.0"].shape[-2:] == (4, 4)


def test_channels_last_swin_is_permuted(x: torch.Tensor) -> None:
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4, depths=(1, 1, 1, 1), embed_dim=24,
                             num_heads=(1, 1, 1, 1), num_classes=0).eval()
    raw = _raw(swin, "layers.1", x)  # NHWC
    assert raw.shape == (2, 8, 8, 48)
    f = FeatureExtractor(swin, ["layers.1"])(x)
    assert torch.equal(f.maps["layers.1"], raw.permute(0, 3, 1, 2))
    assert f.layouts["layers.1"].kind == "channels_last"
    torch.testing.assert_close(f.pooled["layers.1"], raw.mean((1, 2)))
    tv = torchvision.models.swin_t().eval()
    assert FeatureExtractor(tv, ["features.3"])(x).maps["features.3"].shape == (2, 192, 8, 8)


def test_torchvision_vit_and_cnns(x: torch.Tensor) -> None:
    vit = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32,
                                               mlp_dim=64).eval()
    f = FeatureExtractor(vit, ["encoder.layers.encoder_layer_0"])(x)
    raw = _raw(vit, "encoder.layers.encoder_layer_0", x)
    assert f.maps["encoder.layers.encoder_layer_0"].shape == (2, 32, 4, 4)
    assert torch.equal(f.pooled["encoder.layers.encoder_layer_0"], raw[:, 0])
    res = torchvision.models.resnet18().eval()
    fr = FeatureExtractor(res, ["layer3"])(x)
    raw = _raw(res, "layer3", x)
    assert fr.maps["layer3"] is not None and torch.equal(fr.maps["layer3"], raw)
    torch.testing.assert_close(fr.pooled["layer3"], raw.mean((2, 3)))


def test_hugging_face_vit_dinov2_registers_swin(x: torch.Tensor) -> None:
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    vit = transformers.ViTModel(transformers.ViTConfig(image_size=64, patch_size=16, **small)).eval()
    layer = next(n for n, _ in vit.named_modules() if n.endswith("0") and n.count(".") == 1)
    f = FeatureExtractor(vit, [layer])(x)
    assert f.maps[layer].shape == (2, 32, 4, 4) and f.layouts[layer].prefix_tokens == 1
    dino = transformers.Dinov2Model(transformers.Dinov2Config(image_size=56, patch_size=14, **small)).eval()
    layer = next(n for n, _ in dino.named_modules() if n.endswith("layer.0"))
    odd = torch.rand(2, 3, 70, 42)  # interpolated positions: a 5 x 3 grid
    assert FeatureExtractor(dino, [layer])(odd).maps[layer].shape == (2, 32, 5, 3)
    reg = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(image_size=56, patch_size=14,
                                                                                       num_register_tokens=3, **small)).eval()
    layer = next(n for n, _ in reg.named_modules() if n.endswith("layer.0"))
    fr = FeatureExtractor(reg, [layer])(x[:, :, :56, :56])
    assert fr.layouts[layer].prefix_tokens == 4 and fr.maps[layer].shape == (2, 32, 4, 4)
    swin = transformers.SwinModel(transformers.SwinConfig(image_size=64, embed_dim=16, depths=[1, 1], num_heads=[1, 1],
                                                          window_size=4)).eval()
    fs = FeatureExtractor(swin, ["encoder.layers.0"])(x)  # a tuple output; tokens without prefix
    assert fs.maps["encoder.layers.0"].shape == (2, 32, 8, 8)


def test_pooling_output_of_an_embedding_model(x: torch.Tensor) -> None:
    cfg = transformers.CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                        image_size=64, patch_size=16, projection_dim=8)
    clip = transformers.CLIPVisionModelWithProjection(cfg).eval()
    layer = next(n for n, _ in clip.named_modules() if n.endswith("layers.0"))
    f = FeatureExtractor(clip, [layer], pooling="output")(x)
    with torch.no_grad():
        want = clip(x).image_embeds
    torch.testing.assert_close(f.pooled[layer], want)
    assert f.maps[layer].shape == (2, 32, 4, 4)


def test_open_clip_visual_tower(x: torch.Tensor) -> None:
    open_clip = pytest.importorskip("open_clip")
    from xcorr_core.models import load_named_model

    visual = _tiny_open_clip(open_clip).visual.eval()
    f = FeatureExtractor(visual, ["transformer.resblocks.1"], pooling="output")(torch.rand(2, 3, 32, 32))
    assert f.maps["transformer.resblocks.1"].shape == (2, 32, 4, 4) and f.pooled["transformer.resblocks.1"].shape == (2, 16)
    assert callable(load_named_model)


def _tiny_open_clip(open_clip):
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1}}
    open_clip.factory._MODEL_CONFIGS["xcorr-tiny-clip"] = cfg
    return open_clip.create_model("xcorr-tiny-clip", pretrained=None)


def test_gradients_reach_the_grid_of_any_layout(x: torch.Tensor) -> None:
    """With grad=True the rest of the model runs on the grid, so d(output)/d(grid) exists (Grad-CAM, CGC)."""
    vit = tiny_timm_vit(global_pool="avg")
    f = FeatureExtractor(vit, ["blocks.0"], grad=True, stop_early=False)(x.clone().requires_grad_(True), return_output=True)
    w = torch.randn(f.output.shape, generator=torch.Generator().manual_seed(3))  # (a LayerNorm output's plain sum is constant)
    (g,) = torch.autograd.grad((f.output * w).sum(), f.maps["blocks.0"])
    assert g.shape == (2, 48, 4, 4) and bool(g.abs().sum() > 0)


def test_layout_errors_say_what_to_set() -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3))[:, None, :].expand(-1, 7, -1).contiguous()  # [B, 7, 3]: tokens, no grid known

    with pytest.raises(LayoutError, match="prefix_tokens"):
        FeatureExtractor(nn.Sequential(Odd()), ["0"])(torch.rand(2, 3, 16, 16))
    # explicit: 3 prefix tokens + a 2 x 2 grid
    f = FeatureExtractor(nn.Sequential(Odd()), ["0"], layout={"kind": "tokens", "prefix_tokens": 3})(torch.rand(2, 3, 16, 16))
    assert f.maps["0"].shape == (2, 3, 2, 2)
    cube = torch.zeros(2, 7, 7, 7)
    with pytest.raises(LayoutError, match="both channels-first and channels-last"):
        detect_layout(nn.Identity(), cube, (56, 56), 2)
    assert detect_layout(nn.Identity(), cube, (56, 56), 2, given=Layout(kind="channels_last")).kind == "channels_last"
    with pytest.raises(LayoutError, match="needs a 4-d output"):
        to_grid(torch.zeros(2, 5, 3), Layout(kind="channels_first"))
    with pytest.raises(LayoutError, match="pooling 'cls'"):
        FeatureExtractor(torchvision.models.resnet18().eval(), ["layer4"], pooling="cls")(torch.rand(1, 3, 64, 64))
    with pytest.raises(xc.InputError, match="pooling must be"):
        FeatureExtractor(torchvision.models.resnet18(), ["layer4"], pooling="max")  # type: ignore[arg-type]


def test_sequence_first_tokens_and_round_trip() -> None:
    raw = torch.randn(1 + 6, 2, 5)  # [N, B, C]: nn.MultiheadAttention without batch_first
    lay = detect_layout(nn.Identity(), raw, (20, 30), 2, given=Layout(prefix_tokens=1))
    assert lay.kind == "tokens_seq_first" and lay.grid == (2, 3)
    grid = to_grid(raw, lay)
    assert grid.shape == (2, 5, 2, 3) and torch.equal(grid[1, :, 1, 0], raw[1 + 3, 1])
    assert torch.equal(from_grid(grid, raw, lay), raw)
