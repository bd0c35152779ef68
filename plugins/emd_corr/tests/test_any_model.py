"""EMD-Corr on transformer backbones: a ViT block through a pipeline decides as the ViT adapted by
hand; features that can be negative get a sound default, and the unclamped variant's error names the option."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import xcorr_core as xc

timm = pytest.importorskip("timm")


def test_pipeline_on_a_vit_decides_as_the_vit_adapted_by_hand() -> None:
    """`Pipeline(spec, model=vit)` with a block as both layers and emd_corr == the same spec over a
    hand-written adapter that outputs the patch grid channels-first (and pools its mean)."""
    from xcorr_core.data import SynthBirds

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=112, depth=2, embed_dim=48, num_heads=3, num_classes=0).eval()

    class Adapted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = vit
            self.grid = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.vit.blocks(self.vit.norm_pre(self.vit._pos_embed(self.vit.patch_embed(x))))
            return self.grid(t[:, 1:].transpose(1, 2).unflatten(2, (7, 7)))

    gallery, queries = SynthBirds("train", per_class=3, seed=1, num_classes=6), SynthBirds("test", per_class=2, seed=2, num_classes=6)
    spec = {"features": {"pooled_layer": "blocks.1", "spatial_layer": "blocks.1", "pooling": "mean"}, "shortlist": 10,
            "decision": {"k": 5}, "rerankers": [{"name": "emd_corr"}], "explainers": []}
    ours = xc.Pipeline(spec, model=vit).fit(gallery).run(queries)
    hand_spec = dict(spec, features={"pooled_layer": "grid", "spatial_layer": "grid"})
    hand = xc.Pipeline(hand_spec, model=Adapted().eval()).fit(gallery).run(queries)
    for m in ("knn", "emd_corr"):
        assert torch.equal(ours.methods[m].predictions, hand.methods[m].predictions)


def _signed_maps() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    q = torch.randn(16, 4, 4, generator=g) - 0.5  # LayerNorm/GELU-like: many negative values
    return q, torch.randn(6, 16, 4, 4, generator=g) - 0.5


def test_negative_features_default_clamps_and_the_authors_variant_names_the_option() -> None:
    q, cands = _signed_maps()
    auto = xc.create("reranker", "emd_corr")
    assert auto.config.clamp_negative_weights == "auto"
    r = auto.rerank(q, cands)
    assert bool(torch.isfinite(r.scores).all())
    torch.testing.assert_close(r.scores, xc.create("reranker", "emd_corr", clamp_negative_weights=True).rerank(q, cands).scores)
    with pytest.raises(xc.InputError, match="clamp_negative_weights"):
        xc.create("reranker", "emd_corr", clamp_negative_weights=False).rerank(q, cands)


def test_auto_equals_the_authors_code_on_non_negative_features() -> None:
    q, cands = _signed_maps()
    q, cands = q.relu(), cands.relu()
    a = xc.create("reranker", "emd_corr").rerank(q, cands)
    b = xc.create("reranker", "emd_corr", clamp_negative_weights=False).rerank(q, cands)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.order, b.order)
