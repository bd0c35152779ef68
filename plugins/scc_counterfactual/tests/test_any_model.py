"""split_model without a hand-written g for timm ViT / Swin / EfficientNet / ConvNeXt and torchvision
ViT / ConvNeXt: g(f(x)) equals the model's own logits; a counterfactual search on a ViT keeps the query's
prefix tokens and its result re-checks through g."""
from __future__ import annotations

import pytest
import torch

import xcorr_core as xc
from xcorr_scc_counterfactual import split_model
from xcorr_scc_counterfactual.explainer import edited_features, explain_counterfactual

timm = pytest.importorskip("timm")
import torchvision  # noqa: E402


def _models():
    yield "timm_vit_registers", timm.create_model("vit_tiny_patch16_224", img_size=64, depth=3, num_classes=5, reg_tokens=2), "blocks.1"
    yield "timm_swin", timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4, num_classes=5, depths=(1, 1, 1, 1),
                                         embed_dim=16, num_heads=(1, 1, 2, 2)), "layers.2"
    yield "timm_efficientnet", timm.create_model("efficientnet_b0", num_classes=5), "blocks.5"
    yield "timm_convnext", timm.create_model("convnext_atto", num_classes=5), "stages.2"
    yield "torchvision_vit", torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32,
                                                                  mlp_dim=64, num_classes=5), "encoder.layers.encoder_layer_1"
    yield "torchvision_convnext", torchvision.models.convnext_tiny(num_classes=5), "features.5"


@pytest.mark.parametrize("name", [n for n, _, _ in _models()])
def test_g_of_f_is_the_model(name: str) -> None:
    torch.manual_seed(0)
    _, model, layer = next(m for m in _models() if m[0] == name)
    model.eval()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    split = split_model(model, layer)
    with torch.no_grad():
        feats = split.features(x)
        torch.testing.assert_close(split.logits(feats), model(x), rtol=1e-5, atol=1e-5)
    assert feats.ndim == 4


def test_unknown_cut_names_the_valid_ones() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=2, num_classes=5).eval()
    with pytest.raises(xc.LayerNotFoundError, match="blocks.0, blocks.1"):
        split_model(vit, "blocks.1.mlp")


def test_vit_counterfactual_keeps_the_query_prefix_and_rechecks() -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=3, num_classes=3).eval()
    torch.nn.init.normal_(vit.head.weight, std=2.0)
    x = (torch.rand(64, 3, 1, 1) * 0.8 + 0.3 * torch.rand(64, 3, 64, 64)).clamp(0, 1)  # colours: a random ViT tells them apart
    with torch.no_grad():
        pred = vit(x).argmax(1)
    q = 0
    target = next(c for c in range(3) if c != int(pred[q]) and int((pred == c).sum()) >= 2)
    distractors = x[pred == target][:2]
    split = split_model(vit, "blocks.1")
    cf = explain_counterfactual(split, x[q], distractors, semantic_weight=0, prefilter=1)
    assert cf.success and cf.target_class == target and len(cf.edits) >= 1
    with torch.no_grad():
        probs = split.logits(edited_features(split, x[q], distractors, cf)[None]).softmax(1)[0]
    assert int(probs.argmax()) == target
    assert float(probs[target]) == pytest.approx(cf.prob_target[-1], abs=1e-5)
