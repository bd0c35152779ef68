"""The paper's evaluation on SynthBirds: the Table 3 ablation (semantic loss, multiple distractors,
pre-filter) and the Table 4 comparison of auxiliary models (Same-KP, K-means part clustering).

Features are computed once per image (f, and u for each auxiliary model) and every variant searches
on them, so the rows differ only in the search.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from xcorr_core.errors import InputError
from xcorr_core.validation import check_tensor

from .auxiliary import AuxiliaryModel
from .distractors import ClassRule, DistractorPlan, DrawRule, plan_distractors, predict
from .explainer import Counterfactual, counterfactual_from_features
from .metrics import edit_scores, part_clustering_accuracy, part_groups, pooled
from .split import ModelSplit

__all__ = ["StudyData", "prepare_study", "Variant", "TABLE3", "VariantResult", "run_variant", "ablation", "aux_comparison", "part_clustering_table",
           "attribute_study", "lambda_sweep", "plot_lambda_sweep"]


class StudyData:
    """Everything a study needs, computed once.

    Args:
        split: the classifier cut into f and g.
        queries: a labelled data set with ``images`` (uint8 `[N, 3, H, W]`), ``labels``, ``keypoints``
            `[N, P, 3]` and ``boxes`` `[N, 4]` (SynthBirds or CUB-like).
        pool: the data set distractors are drawn from (same fields).
        features: f's features of the queries and of the pool (`[N, d, h, w]` each) when already
            computed elsewhere (the demo shares the classifier's maps between sections); checked
            for shape and finiteness, and taken as f's output.
    """

    def __init__(self, split: ModelSplit, queries: Any, pool: Any, batch: int = 256, progress: bool | None = None,
                 class_rule: ClassRule = "authors", draw: DrawRule = "authors",
                 features: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.split, self.queries, self.pool = split, queries, pool
        self.class_rule, self.draw = class_rule, draw
        names = list(getattr(queries, "part_names", None) or [])
        self.groups = part_groups(names, "auto") if names else None  # CUB: left/right parts merged for Same-KP
        if features is None:
            self.q_feats = self._features(queries.images, batch)
            self.p_feats = self._features(pool.images, batch)
        else:
            for name, feats, data in (("query features", features[0], queries), ("pool features", features[1], pool)):
                check_tensor(name, feats, ndim=4, floating=True, finite=True)
                if feats.shape[0] != len(data.images):
                    raise InputError(f"{name} hold {feats.shape[0]} maps for {len(data.images)} images")
            if features[0].shape[1:] != features[1].shape[1:]:
                raise InputError(f"query and pool features differ in shape: {tuple(features[0].shape[1:])} vs {tuple(features[1].shape[1:])}")
            self.q_feats, self.p_feats = features
        self.q_probs = torch.softmax(split.logits(self.q_feats), 1)
        self.p_probs = torch.softmax(split.logits(self.p_feats), 1)
        self.grid = tuple(self.q_feats.shape[-2:])
        self.image_size = tuple(queries.images.shape[-2:])
        self.aux_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.progress = progress

    def _features(self, images: torch.Tensor, batch: int) -> torch.Tensor:
        return torch.cat([self.split.features(images[s:s + batch].float() / 255) for s in range(0, len(images), batch)])

    def aux(self, aux: AuxiliaryModel, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """u on the queries and the pool, on f's grid (cached by the auxiliary model's name)."""
        if aux.name not in self.aux_cache:
            src, own = aux.source, self.split.source
            if src is not None and own is not None and src[0] is own[0] and src[1] == own[1]:
                # the classifier's own f (e.g. load_auxiliary("classifier") at the split layer): the same features
                self.aux_cache[aux.name] = (self.q_feats.float(), self.p_feats.float())
            else:
                run = lambda imgs: torch.cat([aux(imgs[s:s + batch].float() / 255, self.grid) for s in range(0, len(imgs), batch)])
                self.aux_cache[aux.name] = (run(self.queries.images), run(self.pool.images))
        return self.aux_cache[aux.name]

    def plan(self, n: int, seed: int = 0) -> DistractorPlan:
        """Distractors per query (`plan_distractors` with this study's class and draw rules)."""
        return plan_distractors(self.q_probs, self.queries.labels, self.p_probs, self.pool.labels, n, seed,
                                class_rule=self.class_rule, draw=self.draw)


def prepare_study(split: ModelSplit, queries: Any, pool: Any, progress: bool | None = None, class_rule: ClassRule = "authors",
                  draw: DrawRule = "authors", features: tuple[torch.Tensor, torch.Tensor] | None = None) -> StudyData:
    return StudyData(split, queries, pool, progress=progress, class_rule=class_rule, draw=draw, features=features)


class Variant(BaseModel):
    """One row of the ablation."""

    name: str
    semantic: bool
    multi_distractor: bool
    prefilter: bool
    prefilter_by: Literal["cosine", "log_softmax"] = "cosine"
    prefilter_rounding: Literal["floor", "ceil"] = "floor"


TABLE3: list[Variant] = [
    Variant(name="1 Goyal et al.", semantic=False, multi_distractor=False, prefilter=False),
    Variant(name="2 + semantic", semantic=True, multi_distractor=False, prefilter=False),
    Variant(name="3 + multi-distractor", semantic=False, multi_distractor=True, prefilter=False),
    Variant(name="4 + semantic + multi", semantic=True, multi_distractor=True, prefilter=False),
    Variant(name="5 ours (+ pre-filter)", semantic=True, multi_distractor=True, prefilter=True),
]
#: row 5 with the pre-filter ranked by log L_s per query cell and rounded up (this plugin's rule before
#: it followed the authors' raw-cosine ranking)
ROW5_LOG_SOFTMAX = Variant(name="5b pre-filter by log L_s", semantic=True, multi_distractor=True, prefilter=True,
                           prefilter_by="log_softmax", prefilter_rounding="ceil")


class VariantResult(BaseModel):
    """Metrics of one variant over the kept queries (percentages for the KP / box rates)."""

    name: str
    near_kp_single: float
    same_kp_single: float
    near_kp_all: float
    same_kp_all: float
    in_box_all: float
    edits: float = Field(description="mean #edits of the counterfactuals that flipped")
    failures: int
    counterfactuals: int
    ms_per_counterfactual: float
    config: dict[str, Any]


def run_variant(data: StudyData, plan: DistractorPlan, *, name: str, aux: AuxiliaryModel | None, semantic_weight: float,
                prefilter: float, n_distractors: int, temperature: float = 0.1, path: str = "auto",
                keep: list[Counterfactual] | None = None, prefilter_by: Literal["cosine", "log_softmax"] = "cosine",
                prefilter_rounding: Literal["floor", "ceil"] = "floor") -> VariantResult:
    """Counterfactuals for every planned query with the first ``n_distractors`` of its distractors."""
    use_sem = semantic_weight > 0 or prefilter < 1
    uq = up = None
    if use_sem:
        if aux is None:
            raise ValueError(f"variant {name!r} needs an auxiliary model")
        uq, up = data.aux(aux)
    qs, ps = data.queries, data.pool
    scores: dict[str, list[torch.Tensor]] = {"near_kp": [], "same_kp": [], "in_box": []}
    cfs: list[Counterfactual] = []
    for q, t, dist in tqdm(list(zip(plan.queries, plan.targets, plan.distractors)), desc=name, leave=False,
                           disable=None if data.progress is None else not data.progress):
        d = dist[:n_distractors]
        cf = counterfactual_from_features(
            data.split, data.q_feats[q], data.p_feats[d], t, uq[q] if uq is not None else None, up[d] if up is not None else None,
            image_size=data.image_size, query_id=q, distractor_ids=d, method=name, semantic_weight=semantic_weight,
            temperature=temperature, prefilter=prefilter, path=path, prefilter_by=prefilter_by,  # type: ignore[arg-type]
            prefilter_rounding=prefilter_rounding,
        )
        cfs.append(cf)
        s = edit_scores(cf, qs.keypoints[q], ps.keypoints[d], qs.boxes[q], ps.boxes[d], data.groups)
        for k in scores:
            scores[k].append(s[k])
    if keep is not None:
        keep.extend(cfs)
    pct = lambda v: round(100 * float(v.double().mean()), 1) if v.numel() else float("nan")
    ok = [cf.num_edits for cf in cfs if cf.success]
    return VariantResult(
        name=name, near_kp_single=pct(pooled(scores["near_kp"], "single")), same_kp_single=pct(pooled(scores["same_kp"], "single")),
        near_kp_all=pct(pooled(scores["near_kp"], "all")), same_kp_all=pct(pooled(scores["same_kp"], "all")),
        in_box_all=pct(pooled(scores["in_box"], "all")), edits=round(sum(ok) / max(len(ok), 1), 2),
        failures=sum(not cf.success for cf in cfs), counterfactuals=len(cfs),
        ms_per_counterfactual=round(1000 * sum(cf.seconds for cf in cfs) / max(len(cfs), 1), 2),
        config={"semantic_weight": semantic_weight, "prefilter": prefilter, "prefilter_by": prefilter_by,
                "prefilter_rounding": prefilter_rounding, "distractors": n_distractors,
                "temperature": temperature, "aux": getattr(aux, "name", None), "path": path},
    )


def ablation(data: StudyData, aux: AuxiliaryModel, *, n_distractors: int = 20, semantic_weight: float = 0.4,
             prefilter: float = 0.1, seed: int = 0, rows: Sequence[Variant] = TABLE3, path: str = "auto",
             keep: dict[str, list[Counterfactual]] | None = None) -> tuple[list[VariantResult], DistractorPlan]:
    """The Table 3 rows on the same queries and distractors (single-distractor rows use each query's first)."""
    plan = data.plan(n_distractors, seed)
    out = []
    for v in rows:
        kept: list[Counterfactual] = []
        out.append(run_variant(data, plan, name=v.name, aux=aux if (v.semantic or v.prefilter) else None,
                               semantic_weight=semantic_weight if v.semantic else 0.0, prefilter=prefilter if v.prefilter else 1.0,
                               n_distractors=n_distractors if v.multi_distractor else 1, path=path, keep=kept,
                               prefilter_by=v.prefilter_by, prefilter_rounding=v.prefilter_rounding))
        if keep is not None:
            keep[v.name] = kept
    return out, plan


class AuxResult(BaseModel):
    """One row of Table 4."""

    name: str
    same_kp_all: float
    same_kp_single: float
    kmeans: dict[int, float] = Field(description="K -> part-clustering accuracy (%)")


def part_clustering_table(data: StudyData, auxes: dict[str, AuxiliaryModel], *, ks: Sequence[int] = (15, 50, 250),
                          seed: int = 0) -> dict[str, dict[int, float]]:
    """Table 4's K-means columns: auxiliary model name -> K -> part-clustering accuracy (%) of its cells on
    the queries (`metrics.part_clustering_accuracy`).

    Only reads ``data`` (the auxiliary features are computed on first use and cached), so once they are
    cached it can run in a background thread: faiss releases the GIL and its K-means keeps both cores
    busy while the counterfactual searches, mostly small operations on one core, run in the foreground.
    """
    out = {}
    for name, aux in auxes.items():
        uq, _ = data.aux(aux)
        out[name] = {k: round(100 * part_clustering_accuracy(uq, data.queries.keypoints, data.image_size, k, seed=seed), 1)
                     for k in ks}
    return out


def aux_comparison(data: StudyData, auxes: dict[str, AuxiliaryModel], *, ks: Sequence[int] = (15, 50, 250),
                   semantic_weight: float = 0.4, seed: int = 0,
                   kmeans: dict[str, dict[int, float]] | None = None) -> list[AuxResult]:
    """Same-KP of single-distractor counterfactuals with each auxiliary model, and K-means part clustering of
    its cells on the queries (the paper's Table 4).

    Args:
        kmeans: the K-means columns if already computed (`part_clustering_table` with the same ``ks`` and
            ``seed``, e.g. in a background thread); None computes them here.
    """
    if kmeans is None:
        kmeans = part_clustering_table(data, auxes, ks=ks, seed=seed)
    for name in auxes:
        if name not in kmeans or sorted(kmeans[name]) != sorted(ks):
            raise InputError(f"kmeans lacks the columns K = {list(ks)} of auxiliary model {name!r}")
    plan = data.plan(1, seed)
    rows = []
    for name, aux in auxes.items():
        r = run_variant(data, plan, name=name, aux=aux, semantic_weight=semantic_weight, prefilter=1.0, n_distractors=1)
        rows.append(AuxResult(name=name, same_kp_all=r.same_kp_all, same_kp_single=r.same_kp_single,
                              kmeans={k: kmeans[name][k] for k in ks}))
    return rows


class AttributeResult(BaseModel):
    """Table 6 analogue: how often the top part-attribute of the first edit is discriminative."""

    name: str
    accuracy: float = Field(description="% of first edits whose top part-attribute is in the classes' symmetric difference "
                                        "(edits whose detected parts carry no attribute count as wrong)")
    chance: float = Field(description="% expected when picking uniformly among the allowed part-attributes")
    no_attribute: int = Field(description="first edits whose query cell shows no part that has attributes")
    n: int


def attribute_study(data: StudyData, counterfactuals: dict[str, list[Counterfactual]], detector: Any, attribute_space: Any,
                    class_values: list[dict[str, int]], attribute_names: Sequence[str], *, top_parts: int = 3,
                    seed: int = 0) -> tuple[list[AttributeResult], dict[str, Any]]:
    """Part-attribute explanations of each method's first edit (section 5), against the classes' attributes.

    Trains A on the pool's pooled f features, decomposes g's class weights (needs a linear head).
    """
    from .attributes import attribute_accuracy, basis_decomposition, explain_edit, ground_truth, train_attribute_classifiers

    if data.split.linear_head is None:
        raise ValueError("the basis decomposition needs g = pooling + linear")
    a = train_attribute_classifiers(data.p_feats.mean((2, 3)), data.pool.attributes, attribute_space, seed=seed)
    acc_a = attribute_accuracy(a, data.q_feats.mean((2, 3)), data.queries.attributes)
    alpha = basis_decomposition(data.split.linear_head[0].detach(), a)
    part_names = list(detector.part_names)
    q_parts = torch.cat([detector.top_parts(data.queries.images[s:s + 256].float() / 255, top_parts)
                         for s in range(0, len(data.queries.images), 256)])  # [N, hw, k]
    rows = []
    for name, cfs in counterfactuals.items():
        hits, chance = [], []
        none = 0
        for cf in cfs:
            if not cf.edits:
                continue
            e = cf.edits[0]
            parts = [part_names[p] for p in q_parts[cf.query_id, e.query_cell].tolist()]
            qf = data.q_feats[cf.query_id].flatten(1)[:, e.query_cell]
            df = data.p_feats[cf.distractor_ids[e.distractor]].flatten(1)[:, e.distractor_cell]
            if not set(parts) & set(attribute_space.parts):
                none += 1
                hits.append(False)
                chance.append(0.0)
                continue
            ex = explain_edit(alpha, a, qf, df, cf.query_class, cf.target_class, parts)
            gt = ground_truth(attribute_space, class_values, attribute_names, cf.query_class, cf.target_class)
            hits.append(ex.top_index in gt)
            allowed = [attribute_space.names.index(t) for t in ex.scores]
            chance.append(sum(t in gt for t in allowed) / len(allowed))
        rows.append(AttributeResult(name=name, accuracy=round(100 * sum(hits) / max(len(hits), 1), 1),
                                    chance=round(100 * sum(chance) / max(len(chance), 1), 1), no_attribute=none, n=len(hits)))
    return rows, {"attribute_classifier_accuracy": round(100 * acc_a, 1), "part_attributes": len(attribute_space.names),
                  "alpha_nonzero_per_class": round(float((alpha > 0).sum(1).float().mean()), 1)}


def lambda_sweep(data: StudyData, aux: AuxiliaryModel, plan: DistractorPlan, lambdas: Sequence[float] = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6),
                 *, n_distractors: int = 20, prefilter: float = 0.1) -> list[VariantResult]:
    """The paper's Figure 4 analogue: row 5 of Table 3 at several semantic weights lambda."""
    return [run_variant(data, plan, name=f"lambda={lam}", aux=aux, semantic_weight=lam, prefilter=prefilter, n_distractors=n_distractors)
            for lam in lambdas]


def plot_lambda_sweep(rows: Sequence[VariantResult]) -> Any:
    """Same-KP / Near-KP (left axis, %) and #Edits (right axis) against lambda."""
    import matplotlib.pyplot as plt

    lam = [r.config["semantic_weight"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for key, label, style in (("same_kp_single", "Same-KP (single edit)", "-o"), ("same_kp_all", "Same-KP (all edits)", "--o"),
                              ("near_kp_all", "Near-KP (all edits)", "-s"), ("in_box_all", "in-box (all edits)", ":s")):
        ax.plot(lam, [getattr(r, key) for r in rows], style, label=label, markersize=4)
    ax.set_xlabel("semantic weight lambda")
    ax.set_ylabel("%")
    ax2 = ax.twinx()
    ax2.plot(lam, [r.edits for r in rows], "-^", color="black", label="#Edits", markersize=4)
    ax2.set_ylabel("#Edits")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # below the axes: inside, it covered the curves
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    ax.set_title(f"{rows[0].config.get('aux')}: {rows[0].config['distractors']} distractors, pre-filter {rows[0].config['prefilter']}", fontsize=8)
    fig.tight_layout()
    return fig
