"""PAIR-X on transformers: conservative propagation (Ali et al. 2022) conserves the explained cosine in
float64, plain gradient x input does not; explanations of timm / torchvision / Hugging Face ViTs and Swin
land on the patch grid with finite, non-constant pixel maps; models with no embedding output are refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import xcorr_core as xc
from xcorr_pairx import explain_pair, explain_pairs
from xcorr_pairx.conservative import ConservativePropagation, constant_norm_seed
from xcorr_pairx.lrp import captured_forward, default_composite

timm = pytest.importorskip("timm")


def _conservative_vit() -> nn.Module:
    """ReLU MLPs, no biases, no class token, zero positions: nothing but the image carries relevance."""
    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3, num_classes=0,
                          class_token=False, global_pool="avg", act_layer=nn.ReLU).double().eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias") or "pos_embed" in n:
                p.zero_()
    return m


@pytest.mark.parametrize("rules", [True, False])
def test_conservation_in_float64(rules: bool) -> None:
    m = _conservative_vit()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with captured_forward(m, "blocks.0", ConservativePropagation() if rules else None) as (mm, store):
        xx = x.clone().requires_grad_(True)
        emb = mm(xx)
        acts = store["a"]
        cos, sa, sb = constant_norm_seed(emb[0].detach(), emb[1].detach())
        g_layer, g_input = torch.autograd.grad(emb, (acts, xx), torch.stack([sa, sb]))
    at_input = (g_input * xx).sum((1, 2, 3))
    at_layer = (g_layer * acts).sum((1, 2, 3))
    if rules:
        torch.testing.assert_close(at_input, cos.expand(2), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(at_layer, cos.expand(2), rtol=1e-10, atol=1e-12)
    else:  # attention weights and LayerNorm scales leak relevance under plain gradient x input
        assert float((at_input - cos).abs().max()) > 0.1


def test_functions_are_restored_after_an_exception() -> None:
    import torch.nn.functional as F

    before = (F.softmax, F.layer_norm, F.scaled_dot_product_attention, torch.Tensor.softmax)
    with pytest.raises(RuntimeError):
        with ConservativePropagation().context(nn.Identity()):
            raise RuntimeError("boom")
    assert (F.softmax, F.layer_norm, F.scaled_dot_product_attention, torch.Tensor.softmax) == before


def _images(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.rand(3, side, side, generator=g), torch.rand(3, side, side, generator=g)


def _check(exp, grid: tuple[int, int], n: int) -> None:
    assert exp.grid == grid and exp.matches.shape == (n, 2)
    assert int(exp.matches.max()) < grid[0] * grid[1]
    for pm in (exp.pixel_maps_a, exp.pixel_maps_b):
        assert bool(torch.isfinite(pm).all()) and float(pm.std()) > 0
    assert exp.meta["lrp_engine"] == "conservative"


def test_timm_vit_embedding_explained_on_its_patch_grid() -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=112, depth=8, num_classes=0).eval()
    assert isinstance(default_composite(vit), ConservativePropagation)
    a, b = _images(112)
    exp = explain_pair(vit, a, b, layer="blocks.6", n=10)
    _check(exp, (7, 7), 10)
    with torch.no_grad():
        e = vit(torch.stack([a, b]))
    assert exp.similarity == pytest.approx(float(torch.cosine_similarity(e[0], e[1], 0)), abs=1e-5)
    batched = explain_pairs(vit, a[None], b[None], layer="blocks.6", n=10)[0]
    assert torch.equal(batched.matches, exp.matches)


def test_swin_torchvision_vit_and_hugging_face() -> None:
    a, b = _images(64)
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4, depths=(1, 1, 1, 1), embed_dim=24,
                             num_heads=(1, 1, 1, 1), num_classes=0).eval()
    _check(explain_pair(swin, a, b, layer="layers.1", n=5), (8, 8), 5)
    import torchvision

    tv = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                              num_classes=16)
    tv.heads = nn.Identity()  # torchvision zero-initialises the head: the CLS token is the embedding
    tv.eval()
    _check(explain_pair(tv, a, b, layer="encoder.layers.encoder_layer_0", n=5), (4, 4), 5)
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=56,
                                    patch_size=14)
    dino = transformers.Dinov2Model(cfg).eval()
    layer = next(n for n, _ in dino.named_modules() if n.endswith("layer.0"))
    _check(explain_pair(dino, a[:, :56, :56], b[:, :56, :56], layer=layer, n=5), (4, 4), 5)


def test_a_model_without_embeddings_is_refused() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=0, global_pool="").eval()
    a, b = _images(32)
    with pytest.raises(xc.InputError, match="embeddings"):
        explain_pair(vit, a, b, layer="blocks.0", n=3)


def test_layers_without_rules_are_refused_with_what_to_pass() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    a, b = _images(16)
    with pytest.raises(xc.InputError, match="no relevance rules for the layers GroupNorm"):
        explain_pair(model, a, b, layer="2", n=3)
    exp = explain_pair(model, a, b, layer="2", n=3, composite=ConservativePropagation())  # gradient x input covers any layer
    assert bool(torch.isfinite(exp.pixel_maps_a).all())
