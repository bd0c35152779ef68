"""Users' models by name (timm:, torchvision:, hf:, open_clip:) with local weights: a saved state dict
round-trips through each form (same outputs as the model it came from, with the model's own
normalisation and input size applied by the loader), and bad names / files give typed errors."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

import xcorr_core as xc
from xcorr_core.models import Preprocess, load_named_model, read_weights
from xcorr_core.pipeline import load_model

warnings.filterwarnings("ignore", message=".*pretrained.*")


def _normalised(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    if pre.size is not None and tuple(x.shape[-2:]) != tuple(pre.size):
        x = F.interpolate(x, size=pre.size, mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)


def test_timm_round_trip_through_a_safetensors_file(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    kw = {"img_size": 64, "depth": 2, "num_classes": 3}
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", **kw).eval()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)  # a different init: only the file can make them equal
    got = load_named_model("timm:vit_tiny_patch16_224", tmp_path / "w.safetensors", **kw)
    assert got.xcorr_preprocess.size == (64, 64) and got.xcorr_preprocess.mean == pytest.approx((0.5, 0.5, 0.5))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(got(x), ref(_normalised(x, got.xcorr_preprocess)))
    # through a pipeline spec: features.model / weights / model_kwargs
    spec = {"features": {"model": "timm:vit_tiny_patch16_224", "weights": str(tmp_path / "w.safetensors"), "model_kwargs": kw,
                         "pooled_layer": "blocks.1", "spatial_layer": None}, "explainers": [], "metrics": []}
    pipe = xc.Pipeline(spec)
    assert pipe.extractor(x).maps["blocks.1"].shape == (2, 192, 4, 4)


def test_torchvision_round_trip_and_a_wrapped_checkpoint(tmp_path) -> None:
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=4).eval()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "r.pt")
    got = load_named_model("torchvision:resnet18", tmp_path / "r.pt", num_classes=4)
    assert got.xcorr_preprocess.size == (224, 224)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(got(x), ref(_normalised(x, got.xcorr_preprocess)))
    with pytest.raises(xc.IndexFileError, match="does not fit torchvision resnet34"):
        load_named_model("torchvision:resnet34", tmp_path / "r.pt", num_classes=4)


def test_hugging_face_folder_with_its_preprocessor_config(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                                 patch_size=8)
    torch.manual_seed(0)
    ref = transformers.ViTModel(cfg).eval()
    ref.save_pretrained(tmp_path / "vit")
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.2, 0.2],
                                                                           "size": {"height": 32, "width": 32}}))
    got = load_model(f"hf:{tmp_path / 'vit'}")
    assert got.xcorr_preprocess.mean == pytest.approx((0.5, 0.4, 0.3)) and got.xcorr_preprocess.size == (32, 32)
    x = torch.rand(2, 3, 48, 48)  # resized to 32 by the loader's hook
    with torch.no_grad():
        torch.testing.assert_close(got(x).pooler_output, ref(_normalised(x, got.xcorr_preprocess)).pooler_output)


def test_hugging_face_clip_gives_the_image_encoder(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    cfg = transformers.CLIPConfig(text_config=small | {"vocab_size": 64, "max_position_embeddings": 16},
                                  vision_config=small | {"image_size": 32, "patch_size": 8}, projection_dim=8)
    transformers.CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    got = load_named_model(f"hf:{tmp_path / 'clip'}")
    assert type(got).__name__ == "CLIPVisionModelWithProjection"
    f = xc.FeatureExtractor(got, [next(n for n, _ in got.named_modules() if n.endswith("layers.0"))], pooling="output")(torch.rand(2, 3, 32, 32))
    assert next(iter(f.pooled.values())).shape == (2, 8)


def test_open_clip_checkpoint_file(tmp_path) -> None:
    open_clip = pytest.importorskip("open_clip")
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1}}
    open_clip.factory._MODEL_CONFIGS["xcorr-tiny-clip"] = cfg
    torch.manual_seed(0)
    ref = open_clip.create_model("xcorr-tiny-clip", pretrained=None).eval()
    torch.save(ref.state_dict(), tmp_path / "c.pt")
    got = load_named_model("open_clip:xcorr-tiny-clip", tmp_path / "c.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(got(x), ref.visual(_normalised(x, got.xcorr_preprocess)))


def test_bad_names_and_files(tmp_path) -> None:
    with pytest.raises(xc.ConfigError, match="timm:NAME, torchvision:NAME"):
        load_named_model("keras:resnet")
    with pytest.raises(xc.ConfigError, match="features.weights: no file"):
        load_named_model("torchvision:resnet18", tmp_path / "missing.pt")
    with pytest.raises(xc.ConfigError, match="no classification model"):
        load_named_model("torchvision:not_a_model")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(xc.IndexFileError, match="safetensors"):
        read_weights(tmp_path / "bad.safetensors")
    with pytest.raises(xc.ConfigError, match="apply to timm"):
        load_model("birds", weights=str(tmp_path / "x.pt"))
    with pytest.raises(xc.ConfigError, match="no Hugging Face model"):
        load_named_model(f"hf:{tmp_path / 'nothing-here'}")
