"""What a pipeline can hand a metric: the documented vocabulary of `Metric.requires` names, the
spec-time check that a metric asks only for what the spec can supply, and the run-time assembly
of those inputs from a method's decisions, its explanations, the query data set's annotations and
the gallery's.

Three groups of names:

- **decisions**, over every query of the run: ``predictions``, ``targets``, ``confidences``,
  ``neighbour_ids``, ``neighbour_labels`` — and ``model``, the pipeline's model;
- **explained queries**, one row per explanation of the metric's explainer (``config: {explainer:
  KEY}``, the key of an entry of ``explainers``; without it, every explanation of the method):
  ``explanations``, ``query_ids``, ``images``, the named explainer's own tensor output
  ``maps`` (`[m, H, W]`, stacked), and ``explain``, that explainer as a function of other images
  of the same queries (for consistency under augmentation);
- **annotations**, read from the data sets where they have them (SynthBirds, CUB: boxes,
  keypoints, part names): ``boxes`` / ``query_boxes`` (`[m, 4]`), ``keypoints`` /
  ``query_keypoints`` (`[m, P, 3]`), ``part_names``, and for counterfactual explanations the
  gallery's ``distractor_keypoints`` / ``distractor_boxes`` (per explanation `[n, P, 3]` / `[n, 4]`,
  by the explanation's ``distractor_ids``); for pairwise explanations (``meta["pair_id"]``, the
  gallery image a query was explained against) on photos of one SynthHerd, ``homographies``.

A metric whose ``requires`` leaves this vocabulary is refused when the pipeline is built; a data
set without the annotation a metric reads is an `InputError` naming both. Depends on torch and
the core's components, errors and results modules.
"""
from __future__ import annotations

from typing import Any

import torch

from .errors import ConfigError, InputError
from .results import Explanation

__all__ = ["VOCABULARY", "DECISION_INPUTS", "EXPLAINED_INPUTS", "ANNOTATION_INPUTS", "check_metric_inputs", "metric_inputs"]

DECISION_INPUTS = {
    "predictions": "long [n]: each query's predicted class",
    "targets": "long [n]: each query's true class",
    "confidences": "[n]: votes / k",
    "neighbour_ids": "long [n, k]: gallery ids of the neighbours that voted",
    "neighbour_labels": "long [n, k]: their labels",
    "model": "the pipeline's model (nn.Module)",
}
EXPLAINED_INPUTS = {
    "explanations": "list of m Explanation: the named explainer's (or every explainer's) for this method",
    "query_ids": "long [m]: the explained queries' positions in the data set",
    "images": "[m, 3, H, W]: the explained queries' images",
    "maps": "[m, H, W]: the named explainer's attribution maps, stacked (explainer required)",
    "explain": "a function images [m, 3, H', W'] -> maps [m, H', W']: the named explainer run on other images of the m explained "
               "queries (augmented views, say), each for its query's decision (explainer required)",
}
ANNOTATION_INPUTS = {
    "boxes": "[m, 4] (x0, y0, x1, y1) of the explained queries, from the data set's boxes",
    "query_boxes": "the same as boxes (the counterfactual metrics' name)",
    "keypoints": "[m, P, 3] (x, y, visible) of the explained queries, from the data set's keypoints",
    "query_keypoints": "the same as keypoints (the counterfactual metrics' name)",
    "part_names": "list of P names of the data set's parts",
    "distractor_keypoints": "per explanation [n, P, 3]: the gallery keypoints of its distractor_ids",
    "distractor_boxes": "per explanation [n, 4]: the gallery boxes of its distractor_ids",
    "homographies": "per explanation float64 [3, 3]: query pixels to its pair's (meta['pair_id']) pixels, from the data set's "
                    "true_homography (queries and gallery: photos of one SynthHerd); NaN where the two show different individuals",
}
VOCABULARY: dict[str, str] = {**DECISION_INPUTS, **EXPLAINED_INPUTS, **ANNOTATION_INPUTS}
_NEEDS_EXPLAINER = {"maps", "explain"}
_ANNOTATION_OF = {"boxes": "boxes", "query_boxes": "boxes", "keypoints": "keypoints", "query_keypoints": "keypoints",
                  "part_names": "part_names"}


def check_metric_inputs(where: str, name: str, requires: frozenset[str], explainer: str | None, explainer_keys: list[str]) -> None:
    """Spec-time: raise `ConfigError` when metric ``name`` at ``where`` asks for what a pipeline
    cannot supply, or reads an explainer's output without naming an explainer of the spec."""
    unknown = sorted(set(requires) - set(VOCABULARY))
    if unknown:
        raise ConfigError(f"{where} ({name}) needs {unknown}, which a pipeline cannot supply (it supplies {sorted(VOCABULARY)}); "
                          "compute it with the metric's own function instead", field=where)
    if explainer is not None and explainer not in explainer_keys:
        raise ConfigError(f"{where}.config.explainer: {explainer!r} is not an explainer of this spec "
                          f"(explainers: {explainer_keys or 'none'})", field=f"{where}.config.explainer")
    needs = sorted(set(requires) & _NEEDS_EXPLAINER)
    if needs and explainer is None:
        raise ConfigError(f"{where} ({name}) reads {needs} of an explainer: name it, e.g. config: {{explainer: "
                          f"{explainer_keys[0] if explainer_keys else 'gradcam'}}}", field=f"{where}.config.explainer")


def _annotation(source: Any, attr: str, source_name: str, metric: str) -> Any:
    value = getattr(source, attr, None)
    if value is None:
        raise InputError(f"metric {metric} reads {attr}, but the data set {source_name!r} ({type(source).__name__}) has no "
                         f"{attr} annotation (SynthBirds and CUB have boxes, keypoints and part_names)")
    return value


def _stack_maps(explanations: list[Explanation], metric: str) -> torch.Tensor:
    maps = []
    for e in explanations:
        m = getattr(e, "maps", None)
        if not isinstance(m, torch.Tensor):
            raise InputError(f"metric {metric} reads maps, but {type(e).__name__} ({e.method}) has no maps")
        maps.append(m if m.ndim == 3 else m[None])
    if not maps:
        raise InputError(f"metric {metric}: no explanation to score (explain.correct / explain.wrong select none)")
    return torch.cat(maps)


def metric_inputs(metric: str, requires: frozenset[str], decisions: dict[str, Any], explanations: list[Explanation],
                  data: Any, data_name: str, gallery: Any, explain: Any = None) -> dict[str, Any]:
    """Run-time: the keyword arguments of one metric's ``compute``.

    Args:
        decisions: the decision inputs (`DECISION_INPUTS`) of one method.
        explanations: that method's explanations the metric reads (already filtered by explainer).
        data: the query data set (items ``(image, label)``; annotations as attributes).
        gallery: the gallery data set, for distractors' annotations (None when not kept).
        explain: the metric's explainer as a function of images (``explain``), when it names one.
    """
    out: dict[str, Any] = {}
    qids: torch.Tensor | None = None
    for key in requires:
        if key in DECISION_INPUTS:
            out[key] = decisions[key]
        elif key == "explanations":
            out[key] = explanations
        elif key == "maps":
            out[key] = _stack_maps(explanations, metric)
        elif key == "explain":
            if explain is None:
                raise InputError(f"metric {metric} reads explain: name its explainer (config: {{explainer: KEY}})")
            out[key] = explain
        else:
            if qids is None:
                missing = [e.method for e in explanations if e.query_id is None]
                if missing:
                    raise InputError(f"metric {metric}: explanations of {sorted(set(missing))} carry no query_id")
                qids = torch.tensor([int(e.query_id) for e in explanations], dtype=torch.int64)  # type: ignore[arg-type]
            if key == "query_ids":
                out[key] = qids
            elif key == "images":
                out[key] = torch.stack([data[int(i)][0] for i in qids]) if len(qids) else torch.zeros(0, 3, 1, 1)
            elif key == "part_names":
                out[key] = list(_annotation(data, "part_names", data_name, metric))
            elif key in _ANNOTATION_OF:
                out[key] = _annotation(data, _ANNOTATION_OF[key], data_name, metric)[qids]
            elif key == "homographies":
                out[key] = _homographies(explanations, data, gallery, metric)
            else:  # distractor_keypoints / distractor_boxes, from the gallery by each explanation's distractor_ids
                attr = key.removeprefix("distractor_")
                if gallery is None:
                    raise InputError(f"metric {metric} reads {key}: the pipeline keeps no gallery data set (fit() keeps it; attach() does not)")
                table = _annotation(gallery, attr, "gallery", metric)
                rows = []
                for e in explanations:
                    ids = getattr(e, "distractor_ids", None)
                    if ids is None:
                        raise InputError(f"metric {metric} reads {key}, but {type(e).__name__} ({e.method}) has no distractor_ids")
                    rows.append(table[torch.as_tensor(ids, dtype=torch.int64)])
                out[key] = rows
    return out


def _base(dataset: Any, i: int) -> tuple[Any, int]:
    """The data set under any ``Subset`` wrappers, and item ``i``'s index in it."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, i = dataset.dataset, int(dataset.indices[i])
    return dataset, i


def _homographies(explanations: list[Explanation], data: Any, gallery: Any, metric: str) -> list[torch.Tensor]:
    """Per pairwise explanation, the true homography from its query to its pair (NaN across individuals)."""
    if gallery is None:
        raise InputError(f"metric {metric} reads homographies: the pipeline keeps no gallery data set (fit() keeps it; attach() does not)")
    out = []
    for e in explanations:
        pair = e.meta.get("pair_id")
        if pair is None or e.query_id is None:
            raise InputError(f"metric {metric} reads homographies, but {type(e).__name__} ({e.method}) names no pair (meta['pair_id'])")
        qbase, qi = _base(data, int(e.query_id))
        gbase, gi = _base(gallery, int(pair))
        if qbase is not gbase or not hasattr(qbase, "true_homography"):
            raise InputError(f"metric {metric} reads homographies: the queries and the gallery must be photos of one data set with "
                             "true_homography (SynthHerd; e.g. torch.utils.data.Subset views of it)")
        same = int(qbase.labels[qi]) == int(qbase.labels[gi])
        out.append(qbase.true_homography(qi, gi) if same else torch.full((3, 3), float("nan"), dtype=torch.float64))
    return out

