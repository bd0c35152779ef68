"""Every public tensor function of cgc under non-finite and out-of-range values (issue 27): a typed
xcorr error, or a finite result (or the NaN its docstring documents, for that poison only)."""
from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings
from torch import nn

from xcorr_cgc import (CGCLoss, ViewsConfig, consistency, content_heatmap, curve_auc, info_nce, insertion_deletion, layer_maps,
                       make_views, normalise_mass, orig_view, transform_maps, upsample, blur)
from xcorr_core.models import SmallResNet
from xcorr_core.testing import assert_typed_or_finite, hostile_cases


def _g(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return SmallResNet(3, widths=(4, 4, 8, 8)).eval()


BOXES = torch.tensor([[2, 2, 8, 8], [0, 4, 10, 6]])  # (i, j, h, w) crops of 16 x 16 maps
XYXY = torch.tensor([[2, 2, 10, 10], [0, 0, 8, 16]])  # (x0, y0, x1, y1) boxes
FLIPS = torch.tensor([True, False])

RECIPES: dict[str, tuple[Any, list[str]]] = {
    "content_heatmap": (lambda: (content_heatmap, {"maps": _g(2, 16, 16), "boxes": XYXY}), ["maps", "boxes"]),
    "consistency": (lambda: (consistency, {"maps_aug": _g(2, 8, 8), "maps_orig": _g(2, 16, 16), "boxes": BOXES, "flips": FLIPS}),
                    ["maps_aug", "maps_orig", "boxes"]),
    "transform_maps": (lambda: (transform_maps, {"maps": _g(2, 16, 16), "boxes": BOXES, "flips": FLIPS, "size": 8}), ["maps", "boxes"]),
    "orig_view": (lambda: (orig_view, {"image": _g(3, 20, 24), "size": 16}), ["image"]),
    "make_views": (lambda: (make_views, {"images": _g(2, 3, 24, 24), "config": ViewsConfig(size=16), "gen": torch.Generator().manual_seed(0)}),
                   ["images"]),
    "blur": (lambda: (blur, {"images": _g(2, 3, 16, 16)}), ["images"]),
    "curve_auc": (lambda: (curve_auc, {"curves": _g(2, 9)}), ["curves"]),
    "upsample": (lambda: (upsample, {"maps": _g(2, 4, 4), "size": (8, 8)}), ["maps"]),
    "normalise_mass": (lambda: (normalise_mass, {"maps": _g(2, 4, 4)}), ["maps"]),
    "info_nce": (lambda: (info_nce, {"anchor": _g(3, 8), "positive": _g(3, 8), "temperature": 0.5}), ["anchor", "positive"]),
    "layer_maps": (lambda: (lambda **kw: layer_maps(_net(), layer="layer3", **kw), {"images": _g(2, 3, 32, 32), "targets": torch.tensor([0, 2])}),
                   ["images", "targets"]),
    "insertion_deletion": (lambda: (lambda **kw: insertion_deletion(_net(), steps=4, **kw), {"images": _g(2, 3, 32, 32), "maps": _g(2, 4, 4)}),
                           ["images", "maps"]),
    "CGCLoss": (lambda: (lambda **kw: CGCLoss(layer="layer3")(_net(), **kw),
                         {"orig": _g(2, 3, 32, 32), "aug": _g(2, 3, 32, 32), "boxes": torch.tensor([[0, 0, 16, 16], [8, 8, 24, 24]]),
                          "flips": FLIPS}), ["orig", "aug", "boxes"]),
}

#: documented non-finite results: a map with no positive mass has no content share, no cosine and no
#: insertion order (NaN, left out of means), which is what negated maps are
DOCUMENTED = {"content_heatmap:negative": "zero mass -> NaN", "consistency:negative": "all-zero map -> NaN",
              "insertion_deletion:negative": "constant map -> NaN AUC"}


@settings(max_examples=60)
@given(hostile_cases(RECIPES))
def test_hostile_inputs(case: tuple[str, str, str, float]) -> None:
    assert_typed_or_finite(RECIPES, *case, allow_nonfinite=DOCUMENTED)
