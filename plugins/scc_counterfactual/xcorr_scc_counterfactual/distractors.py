"""Choosing distractors as the paper does: the distractor class c' of a query class c is the class
c is most often confused with (confusion matrix). Two rules for each choice, the authors' code by
default:

* the class (``class_rule``): ``"authors"`` — the first maximum of the confusion row (lowest class
  id on ties); a class the model never confuses has none and its queries are skipped (counted);
  ``"mean_probability"`` — ties, and rows without any error, broken by the mean softmax probability;
* the images (``draw``): ``"authors"`` — up to n images of c' drawn with a seed, then the ones the
  model misclassifies dropped (fewer than n may remain); ``"correct_only"`` — n drawn among the
  images of c' the model classifies correctly.

Queries the model gets wrong are skipped and counted."""
from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import BaseModel, Field

from xcorr_core.errors import InputError

__all__ = ["predict", "confusion_matrix", "most_confused", "DistractorPlan", "plan_distractors"]

ClassRule = Literal["authors", "mean_probability"]
DrawRule = Literal["authors", "correct_only"]


@torch.no_grad()
def predict(logits_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Softmax probabilities `[N, C]` of ``logits_fn`` over ``images`` (uint8 or float in [0, 1]) in batches."""
    out = []
    for s in range(0, len(images), batch):
        x = images[s:s + batch]
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        out.append(torch.softmax(logits_fn(x).float(), 1))
    return torch.cat(out)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts `[C, C]`: row = true class, column = predicted class."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    cm.index_put_((target.long(), pred.long()), torch.ones_like(target, dtype=torch.long), accumulate=True)
    return cm


def most_confused(probs: torch.Tensor, target: torch.Tensor, rule: ClassRule = "authors") -> torch.Tensor:
    """Distractor class per class `[C]`: the most frequent wrong prediction.

    ``rule="authors"``: ties go to the lowest class id and a class without any error gets -1 (no
    distractor class); ``"mean_probability"``: ties and error-free rows go to the class with the
    highest mean probability."""
    c = probs.shape[1]
    cm = confusion_matrix(probs.argmax(1), target, c).double()
    cm.fill_diagonal_(-1)
    if rule == "authors":
        best = cm.argmax(1)  # the first maximum: the lowest class id on ties
        return torch.where(cm.amax(1) > 0, best, torch.full_like(best, -1))
    if rule != "mean_probability":
        raise InputError(f"rule must be 'authors' or 'mean_probability', got {rule!r}")
    soft = torch.zeros(c, c, dtype=torch.float64).index_add_(0, target.long(), probs.double())
    counts = torch.bincount(target.long(), minlength=c).clamp(min=1).double()
    score = cm + soft / counts[:, None]  # mean probability < 1: only breaks ties between equal counts
    score.fill_diagonal_(-1)
    return score.argmax(1)


class DistractorPlan(BaseModel):
    """Which distractors each kept query gets."""

    queries: list[int] = Field(description="query ids the model classifies correctly")
    targets: list[int] = Field(description="distractor class per kept query")
    distractors: list[list[int]] = Field(description="pool ids of the distractors per kept query")
    skipped_wrong: int = Field(description="queries skipped because the model misclassifies them")
    skipped_no_distractor: int = Field(0, description="queries whose distractor class has no correctly classified image")
    skipped_no_confusion: int = Field(0, description="queries of a class the model never confuses (authors' class rule)")
    distractor_class: list[int] = Field(description="c' for every class c (-1: none)")


def plan_distractors(query_probs: torch.Tensor, query_labels: torch.Tensor, pool_probs: torch.Tensor, pool_labels: torch.Tensor,
                     n: int, seed: int = 0, confusion_probs: torch.Tensor | None = None,
                     confusion_labels: torch.Tensor | None = None, class_rule: ClassRule = "authors",
                     draw: DrawRule = "authors") -> DistractorPlan:
    """Distractors for every query.

    Args:
        query_probs / query_labels: the model's probabilities `[Q, C]` and the true labels `[Q]` of the queries.
        pool_probs / pool_labels: the same for the images distractors are drawn from.
        n: distractors per query (fewer when the class has fewer correct images).
        confusion_probs / confusion_labels: data for the confusion matrix (default: the queries).
        class_rule / draw: see the module docstring (the authors' rules by default).
    """
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    cp = query_probs if confusion_probs is None else confusion_probs
    cl = query_labels if confusion_labels is None else confusion_labels
    if draw not in ("authors", "correct_only"):
        raise InputError(f"draw must be 'authors' or 'correct_only', got {draw!r}")
    dclass = most_confused(cp, cl, class_rule)
    pool_ok = pool_probs.argmax(1) == pool_labels
    gen = torch.Generator().manual_seed(seed)
    queries, targets, dists = [], [], []
    wrong = nodist = noconf = 0
    for q in range(len(query_labels)):  # per query: a seeded draw among the images of c'
        c = int(query_labels[q])
        if int(query_probs[q].argmax()) != c:
            wrong += 1
            continue
        t = int(dclass[c])
        if t < 0:
            noconf += 1
            continue
        if draw == "correct_only":
            cand = torch.nonzero(pool_ok & (pool_labels == t)).flatten()
            pick = cand[torch.randperm(cand.numel(), generator=gen)[:n]]
        else:  # the authors: up to n of the class, then the misclassified ones dropped
            cand = torch.nonzero(pool_labels == t).flatten()
            pick = cand[torch.randperm(cand.numel(), generator=gen)[:n]]
            pick = pick[pool_ok[pick]]
        if pick.numel() == 0:
            nodist += 1
            continue
        queries.append(q)
        targets.append(t)
        dists.append(pick.tolist())
    return DistractorPlan(queries=queries, targets=targets, distractors=dists, skipped_wrong=wrong,
                          skipped_no_distractor=nodist, skipped_no_confusion=noconf, distractor_class=dclass.tolist())
