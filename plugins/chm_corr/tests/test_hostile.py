"""Every public tensor function of chm_corr under non-finite and out-of-range values (issue 27):
a typed xcorr error, or a finite result."""
from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings

from xcorr_core.models import SmallResNet
from xcorr_core.testing import assert_typed_or_finite, hostile_cases
from xcorr_chm_corr import CHM4d, CHM6d, CHMLearner, CHMNet, chm_cells, chm_corr_rerank, chm_transfers, correlate4d, correlate6d


def _chm() -> CHMNet:
    torch.manual_seed(0)
    return CHMNet(SmallResNet(4, widths=(8, 8, 16, 16)), "layer3", 16).eval()


def _g(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def _call(obj: Any, method: str = "__call__"):  # type: ignore[no-untyped-def]
    return getattr(obj, method)


RECIPES: dict[str, tuple[Any, list[str]]] = {
    "correlate4d": (lambda: (correlate4d, {"x": _g(2, 4, 4, 4, 4), "kernel": _g(3, 3, 3, 3), "bias": _g(1)}), ["x", "kernel", "bias"]),
    "correlate6d": (lambda: (correlate6d, {"x": _g(1, 3, 3, 4, 4, 4, 4), "kernel": _g(3, 3, 3, 3, 3, 3), "bias": _g(1)}),
                    ["x", "kernel", "bias"]),
    "CHM4d": (lambda: (CHM4d(3), {"x": _g(2, 4, 4, 4, 4)}), ["x"]),
    "CHM6d": (lambda: (CHM6d(3), {"x": _g(1, 3, 3, 4, 4, 4, 4)}), ["x"]),
    "CHMLearner": (lambda: (CHMLearner(16), {"src": _g(1, 16, 4, 4), "trg": _g(2, 16, 4, 4)}), ["src", "trg"]),
    "CHMNet.forward": (lambda: (_chm(), {"src": _g(1, 3, 32, 32), "trg": _g(2, 3, 32, 32)}), ["src", "trg"]),
    "CHMNet.correlate": (lambda: (_chm().correlate, {"src_feat": _g(1, 16, 4, 4), "trg_feat": _g(2, 16, 4, 4)}), ["src_feat", "trg_feat"]),
    "CHMNet.transfer": (lambda: (_chm().transfer, {"src": _g(1, 3, 32, 32), "tgt": _g(1, 3, 32, 32), "points": _g(1, 4, 2) * 31}),
                        ["src", "tgt", "points"]),
    "chm_transfers": (lambda: (lambda **kw: chm_transfers(_chm(), **kw), {"query": _g(1, 16, 4, 4), "cands": _g(1, 2, 16, 4, 4)}),
                      ["query", "cands"]),
    "chm_cells": (lambda: (lambda **kw: chm_cells(_chm(), **kw), {"query": _g(1, 16, 4, 4), "cands": _g(1, 2, 16, 4, 4)}),
                  ["query", "cands"]),
    "chm_corr_rerank": (lambda: (lambda **kw: chm_corr_rerank(_chm(), **kw), {"query": _g(16, 4, 4), "cands": _g(3, 16, 4, 4)}),
                        ["query", "cands"]),
    "chm_corr_rerank(cells)": (lambda: (lambda **kw: chm_corr_rerank(None, **kw),
                                        {"query": _g(16, 4, 4), "cands": _g(3, 16, 4, 4), "cells": torch.randint(0, 16, (3, 16))}),
                               ["query", "cands", "cells"]),
    "chm_corr_rerank(keypoints)": (lambda: (lambda **kw: chm_corr_rerank(_chm(), **kw),
                                            {"query": _g(16, 4, 4), "cands": _g(3, 16, 4, 4), "keypoint_mask": torch.rand(16) > 0.5}),
                                   ["keypoint_mask"]),
}


@settings(max_examples=60)
@given(hostile_cases(RECIPES))
def test_hostile_inputs(case: tuple[str, str, str, float]) -> None:
    with torch.no_grad():
        assert_typed_or_finite(RECIPES, *case)
