"""Part-attribute explanations of a counterfactual edit (paper section 5).

1. Part-attribute classifiers A: global average pooling of f's output + one linear layer, one logistic
   output per (attribute, value) pair, trained on the labelled images (same feature space as g).
2. Interpretable basis decomposition (Zhou et al. 2018) of each class weight ``w_c`` of g's linear layer
   onto the part-attribute weights: ``w_c ~ sum_t alpha_ct a_t`` with ``alpha >= 0`` (non-negative least
   squares, scipy).
3. For an edit (query cell i <- distractor cell j): the parts detector's top-k parts at the query cell
   restrict the candidates t; ``s_t = alpha_ct (a_t . f(I)_i)`` and ``s'_t = alpha_c't (a_t . f(I')_j)``;
   the explanation is the t with the largest ``s'_t - s_t``.
4. Evaluation: the top-1 part-attribute is correct when it belongs to exactly one of the two classes
   (the symmetric difference of their part-attribute sets).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from scipy.optimize import nnls

from xcorr_core.errors import InputError

__all__ = ["PartAttributeSpace", "AttributeClassifiers", "train_attribute_classifiers", "basis_decomposition",
           "explain_edit", "AttributeExplanation", "ground_truth"]


class PartAttributeSpace(BaseModel):
    """The vocabulary: one entry per (attribute, value), each belonging to a part.

    Build it from SynthBirds' ``ATTRIBUTES`` (attribute -> (part, values)) with `from_attributes`.
    """

    names: list[str] = Field(description="'attribute=value', e.g. 'beak_shape=hooked'")
    parts: list[str] = Field(description="part of each entry")
    attribute_index: list[int] = Field(description="which attribute (column of the labels) each entry reads")
    value_index: list[int]

    @classmethod
    def from_attributes(cls, attributes: dict[str, tuple[str, tuple[str, ...]]]) -> "PartAttributeSpace":
        names, parts, ai, vi = [], [], [], []
        for a, (attr, (part, values)) in enumerate(attributes.items()):
            for v, value in enumerate(values):
                names.append(f"{attr}={value}")
                parts.append(part)
                ai.append(a)
                vi.append(v)
        return cls(names=names, parts=parts, attribute_index=ai, value_index=vi)

    def multi_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """`[N, T]` targets from per-attribute value indices `[N, A]`."""
        ai = torch.tensor(self.attribute_index)
        vi = torch.tensor(self.value_index)
        return (labels[:, ai] == vi).float()

    def of_class(self, class_values: dict[str, int], attribute_names: Sequence[str]) -> set[int]:
        """Entries a class has, from its attribute -> value index dict."""
        vals = [class_values[n] for n in attribute_names]
        return {t for t, (a, v) in enumerate(zip(self.attribute_index, self.value_index)) if vals[a] == v}


class AttributeClassifiers(BaseModel, arbitrary_types_allowed=True):
    """A: logistic part-attribute classifiers on globally pooled f features."""

    weight: torch.Tensor = Field(description="[T, d]")
    bias: torch.Tensor = Field(description="[T]")
    space: PartAttributeSpace
    test_accuracy: float | None = Field(None, description="per-attribute value accuracy on held-out images")

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled @ self.weight.T + self.bias


def train_attribute_classifiers(pooled: torch.Tensor, labels: torch.Tensor, space: PartAttributeSpace, *,
                                weight_decay: float = 1e-3, steps: int = 200, seed: int = 0) -> AttributeClassifiers:
    """Fit A by full-batch L-BFGS on pooled features `[N, d]` and attribute value indices `[N, A]`."""
    if pooled.ndim != 2 or len(pooled) != len(labels):
        raise InputError("pooled must be [N, d] with one label row per image")
    torch.manual_seed(seed)
    y = space.multi_hot(labels)
    mu, sd = pooled.mean(0), pooled.std(0).clamp(min=1e-6)
    x = (pooled - mu) / sd
    w = torch.zeros(y.shape[1], x.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w.T + b, y) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    # fold the standardisation into the weights so A reads raw f features
    weight = (w / sd).detach()
    bias = (b - (w * mu / sd).sum(1)).detach()
    return AttributeClassifiers(weight=weight, bias=bias, space=space)


def attribute_accuracy(a: AttributeClassifiers, pooled: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over attributes of the accuracy of the arg-max value."""
    logits = a.logits(pooled)
    ai = torch.tensor(a.space.attribute_index)
    vi = torch.tensor(a.space.value_index)
    hits = []
    for k in range(labels.shape[1]):  # eight attributes
        cols = torch.nonzero(ai == k).flatten()
        pred = vi[cols][logits[:, cols].argmax(1)]
        hits.append((pred == labels[:, k]).float().mean())
    return float(torch.stack(hits).mean())


def basis_decomposition(class_weight: torch.Tensor, a: AttributeClassifiers) -> torch.Tensor:
    """alpha `[C, T]` >= 0 with ``class_weight[c] ~ alpha[c] @ a.weight`` (NNLS per class)."""
    basis = a.weight.double().T.numpy()  # [d, T]
    out = np.stack([nnls(basis, w)[0] for w in class_weight.double().numpy()])
    return torch.from_numpy(out).float()


class AttributeExplanation(BaseModel):
    """The part-attribute that explains one edit best."""

    top: str
    top_index: int
    parts: list[str] = Field(description="parts detected in the query cell")
    scores: dict[str, float] = Field(description="s'_t - s_t for the allowed part-attributes")
    correct: bool | None = None


def explain_edit(alpha: torch.Tensor, a: AttributeClassifiers, query_cell_feat: torch.Tensor, distractor_cell_feat: torch.Tensor,
                 query_class: int, target_class: int, parts: Sequence[str]) -> AttributeExplanation:
    """Top part-attribute for an edit, among those of ``parts`` (cell features `[d]`)."""
    allowed = [t for t, p in enumerate(a.space.parts) if p in set(parts)]
    if not allowed:
        raise InputError(f"no part-attribute belongs to the detected parts {list(parts)}")
    resp_q = a.weight @ query_cell_feat  # [T]
    resp_d = a.weight @ distractor_cell_feat
    diff = alpha[target_class] * resp_d - alpha[query_class] * resp_q
    idx = torch.tensor(allowed)
    best = int(idx[diff[idx].argmax()])
    return AttributeExplanation(top=a.space.names[best], top_index=best, parts=list(parts),
                                scores={a.space.names[t]: float(diff[t]) for t in allowed})


def ground_truth(space: PartAttributeSpace, class_values: list[dict[str, int]], attribute_names: Sequence[str], c: int, c2: int) -> set[int]:
    """Part-attributes that belong to exactly one of classes c and c2."""
    return space.of_class(class_values[c], attribute_names) ^ space.of_class(class_values[c2], attribute_names)
