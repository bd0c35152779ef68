"""Grad-CAM and the CGC loss at ViT blocks and Swin stages: the maps equal Grad-CAM computed by hand on
the patch tokens (channels-last maps for Swin), and the loss is finite and trains the transformer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xcorr_cgc import CGCLoss, layer_maps
from xcorr_cgc.views import ViewsConfig, make_views

timm = pytest.importorskip("timm")


def _by_hand(model, layer, x):
    out = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, o: out.__setitem__("o", o))
    logits = model(x)
    h.remove()
    t = logits.argmax(1)
    (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), out["o"])
    return out["o"].detach(), g, t


def test_vit_gradcam_equals_the_hand_computation_on_patch_tokens() -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=112, depth=4, num_classes=5).eval()
    x = torch.rand(2, 3, 112, 112)
    lm = layer_maps(vit, x, "blocks.2")
    acts, g, t = _by_hand(vit, "blocks.2", x)
    patches, gp = acts[:, 1:], g[:, 1:]  # drop the CLS token; [B, 49, C]
    want = F.relu((gp.mean(1, keepdim=True) * patches).sum(-1)).reshape(2, 7, 7)
    assert torch.equal(lm.targets, t)
    torch.testing.assert_close(lm.maps, want, rtol=1e-5, atol=1e-7)
    assert float(lm.maps.std()) > 0
    # CLS pooling: the last block's patch tokens get no gradient. Grad-CAM there is exactly zero (as by hand),
    # and a warning says why and what to explain instead
    with pytest.warns(UserWarning, match="earlier block"):
        last = layer_maps(vit, x, "blocks.3", lm.targets)
    acts, g, _ = _by_hand(vit, "blocks.3", x)
    assert not bool(g[:, 1:].any()) and torch.equal(last.maps, torch.zeros(2, 7, 7))


def test_swin_gradcam_reads_channels_last_stages() -> None:
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=112, window_size=7, depths=(1, 1, 2, 1), embed_dim=32,
                             num_heads=(1, 2, 2, 4), num_classes=5).eval()
    x = torch.rand(2, 3, 112, 112)
    lm = layer_maps(swin, x, "layers.2")
    acts, g, _ = _by_hand(swin, "layers.2", x)  # [B, 7, 7, C]
    want = F.relu((g.mean((1, 2), keepdim=True) * acts).sum(-1))
    torch.testing.assert_close(lm.maps, want, rtol=1e-5, atol=1e-7)
    assert float(lm.maps.std()) > 0


def test_cgc_loss_trains_a_vit() -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, embed_dim=48, num_heads=3, num_classes=4)
    g = torch.Generator().manual_seed(0)
    v = make_views(torch.rand(3, 3, 32, 32, generator=g), ViewsConfig(size=32, resize_ratio=1.0, scale=(0.3, 1.0)), g)
    out = CGCLoss(layer="blocks.1", temperature=0.5)(vit, v.orig, v.aug, v.boxes, v.flips)
    assert bool(torch.isfinite(out.loss))
    out.loss.backward()
    grads = [p.grad for p in vit.blocks[0].parameters() if p.grad is not None]
    assert grads and any(float(gr.abs().sum()) > 0 for gr in grads)
