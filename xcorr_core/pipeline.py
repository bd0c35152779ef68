"""`Pipeline`: the runner of a `PipelineSpec` (``xcorr_core.spec``) — feature extraction, a gallery
index, optional re-rankers, a decision rule, explainers and metrics; its results are the
`RunResult` / `MethodResult` models of ``xcorr_core.results``.

`Pipeline(spec)` validates everything up front (component names, configs, layer names, what each
explainer/metric needs) and raises `ConfigError` saying where in the spec the problem is. The spec
classes and results are re-exported here for compatibility. Building the components is
`assembly`, a re-ranker's decisions `decisions`, what metrics read `vocabulary`, what explainers
get beyond the decision (distractors, a pair) `case_inputs`. Depends on the core only.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import registry
from .assembly import Built, build_components
from .case_inputs import add_distractors, add_pair
from .components import Case, CellReRanker, MethodScopedExplainer
from .decisions import Decisions, check_ranking, owner, rerank_decisions  # noqa: F401  (check_ranking re-exported)
from .errors import ComponentOutputError, ConfigError, InputError, LayerNotFoundError
from .features import FeatureExtractor, Features
from .index import GalleryIndex
from .knn import majority_vote
from .labels import _labels_of, _length
from .models.loading import load_model
from .results import Explanation, MethodResult, MetricResult, RunResult
from .spec import ComponentSpec, DecisionSpec, ExplainSelection, FeatureSpec, IndexSpec, PipelineSpec
from .store import SpatialStore
from .validation import check_images
from .vocabulary import metric_inputs

__all__ = ["load_model", "Decisions", "PipelineSpec", "ComponentSpec", "FeatureSpec", "IndexSpec", "DecisionSpec", "ExplainSelection",
           "Pipeline", "MethodResult", "RunResult"]

class Pipeline:
    """A validated, runnable pipeline.

    Args:
        spec: the `PipelineSpec` (or a dict / path to a YAML/JSON file).
        model: the feature model; default: ``spec.features.model``.
        work_dir: where the gallery index and spatial store are written (default: a temp dir).

    Example:
        >>> pipe = Pipeline(PipelineSpec(decision={"k": 20}))
        >>> pipe.fit(SynthBirds("train"))
        >>> result = pipe.run(SynthBirds("test"), name="test")
        >>> result.summary()  # {"knn": {"top1_accuracy": ..., "mean_confidence": ...}}
    """

    def __init__(self, spec: PipelineSpec | dict[str, Any] | str | Path | None = None, *, model: nn.Module | None = None,
                 work_dir: str | Path | None = None) -> None:
        if spec is None:
            spec = PipelineSpec()
        elif isinstance(spec, (str, Path)):
            spec = PipelineSpec.from_file(spec)
        elif isinstance(spec, dict):
            spec = PipelineSpec.parse(spec)
        self.spec = spec
        f = spec.features
        self.model = model if model is not None else load_model(f.model, f.weights, **f.model_kwargs)
        self._built = self._build()
        layers = [f.pooled_layer] + ([f.spatial_layer] if f.spatial_layer else [])
        try:
            self.extractor = FeatureExtractor(self.model, layers, layout=f.layout, pooling=f.pooling)
        except LayerNotFoundError as exc:
            bad = "features.pooled_layer" if spec.features.pooled_layer not in dict(self.model.named_modules()) else "features.spatial_layer"
            raise ConfigError(f"{bad}: {exc}", field=bad) from exc
        self._tmp = tempfile.TemporaryDirectory(prefix="xcorr-") if work_dir is None else None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.index: GalleryIndex | None = None
        self.store: SpatialStore | None = None
        self.gallery: Any = None

    # -- validation -----------------------------------------------------------------
    def _build(self) -> Built:
        return build_components(self.spec)

    @property
    def methods(self) -> list[str]:
        """Classifier names this pipeline runs: ``"knn"`` then each re-ranker."""
        return ["knn"] + [n for n, _ in self._built.rerankers]

    @property
    def metric_names(self) -> list[str]:
        """The keys of the spec's metrics, in spec order (the names their results go under)."""
        return [k for k, _ in self._built.metrics]

    @property
    def needs_maps(self) -> bool:
        """Whether the gallery's spatial maps must be stored (the spec has re-rankers)."""
        return bool(self._built.rerankers)

    @property
    def store_layout(self) -> str:
        """How the gallery's maps are stored: the spec's ``maps.layout``, or with ``auto`` ``cells``
        when every re-ranker reads cells (``maps`` otherwise)."""
        return self._map_layout()

    # -- stages: what run() does, one public step at a time (jobs and plugins call these) --
    def encode(self, data: Any, *, batch_size: int | None = None, progress: bool | None = False,
               desc: str = "encode") -> Iterator[tuple[int, Features]]:
        """``(start, Features)`` per batch of ``data`` on the model's device, each batch checked
        (`check_images`): pooled vectors of ``features.pooled_layer`` and maps of ``spatial_layer``.
        The one feature-extraction loop of fit, run and the jobs' workers."""
        f = self.spec.features
        yield from self.extractor.iter_batches(data, batch_size=batch_size or f.batch_size, device=self._device(), progress=progress,
                                               desc=desc, prepare=self._check_images)

    def decide(self, data: Any, *, name: str = "data", progress: bool | None = None, only: str | None = None) -> dict[str, "Decisions"]:
        """Encode ``data``, shortlist it in the gallery index, re-rank and vote: `Decisions` per method
        (``"knn"`` and each re-ranker; ``only`` restricts to one). Seeded by the spec."""
        if self.index is None:
            raise InputError("call fit(gallery) or attach(index, store) before decide()")
        return self._decide(data, name, progress, only)

    def case(self, decisions: "Decisions", i: int, targets: torch.Tensor, *, query_id: int | None = None,
             image: torch.Tensor | None = None) -> Case:
        """The `Case` of row ``i`` of ``decisions`` (what an Explainer reads); ``query_id`` defaults to ``i``."""
        case = self._case(decisions, i, targets)
        if query_id is not None:
            case.query_id = query_id
        case.image = image
        return case

    def explain_case(self, case: Case) -> list[Explanation]:
        """Every explainer of the spec that applies to ``case`` (its method and the fields it needs)."""
        return self._explain_case(case)

    def measure(self, decisions: "Decisions", targets: torch.Tensor, explanations: list[Explanation], *,
                data: Any = None) -> dict[str, MetricResult]:
        """Each metric of the spec over one method's decisions (`xcorr_core.vocabulary`); annotations
        are read from ``data`` when a metric needs them."""
        return self._metrics(decisions, targets, explanations, data=data)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Every batch: RGB `[B, 3, H, W]` floats; in [0, 1] for models that take unit images
        (`xcorr_core.models.takes_unit_images`: the shipped models and named models)."""
        from .models import takes_unit_images

        return check_images(images, unit_range=takes_unit_images(self.model))

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # -- gallery ----------------------------------------------------------------------
    def _map_layout(self) -> str:
        """The store layout: the spec's, or with ``auto`` cells when every re-ranker reads cells."""
        want = self.spec.maps.layout
        if want != "auto":
            return want
        every = all(isinstance(rr, CellReRanker) for _, rr in self._built.rerankers)
        return "cells" if every and self._built.rerankers else "maps"

    def fit(self, gallery: Any, *, labels: torch.Tensor | None = None, progress: bool | None = None) -> "Pipeline":
        """Index ``gallery`` (a Dataset of ``(image, label)``); store its spatial maps if re-rankers need them."""
        if _length(gallery, "gallery") == 0:
            raise InputError("the gallery is empty")
        labels = _labels_of(gallery, labels, "labels")
        need = max(self.spec.decision.k, self.spec.shortlist if self._built.rerankers else 0)
        if need > len(gallery):
            raise InputError(f"the gallery has {len(gallery)} items but the pipeline needs {need} neighbours per query")
        if labels.numel() and int(labels.min()) < 0:
            raise InputError(f"labels must be class ids >= 0, got {int(labels.min())}")
        f = self.spec.features
        store_maps = bool(self._built.rerankers)
        # all or nothing: the new store and index are built aside and replace the old pair only when
        # both are complete; on any failure (an image that raises, Ctrl-C) the old pair stays and the
        # unfinished store's temporary file is removed
        store: SpatialStore | None = None
        pooled: list[torch.Tensor] = []
        try:
            for start, feats in self.encode(gallery, progress=progress, desc="gallery"):
                pooled.append(feats.pooled[f.pooled_layer].detach().cpu())
                if store_maps:
                    maps = feats.maps[f.spatial_layer]
                    if store is None:
                        store = SpatialStore.create(self.work_dir / "gallery_maps", len(gallery), tuple(maps.shape[1:]),
                                                    layer=f.spatial_layer or "", layout=self._map_layout(), dtype=self.spec.maps.dtype)
                    store.write(start, maps)
            vecs = torch.cat(pooled)
            if vecs.shape[0] != len(gallery):
                raise InputError(f"the gallery yielded {vecs.shape[0]} images but has length {len(gallery)}")
            ix = self.spec.index
            index = GalleryIndex.build(vecs, labels, metric=ix.metric, kind=ix.kind, train_size=ix.train_size, seed=self.spec.seed,
                                       **ix.params())
            if store is not None:
                store = store.finalize()
            index.save(self.work_dir / "gallery.index")
        except BaseException:
            if store is not None:
                store.abort()
            raise
        self.store, self.index = store, index
        self.gallery = gallery
        self.num_classes = int(labels.max()) + 1
        return self

    # -- running ----------------------------------------------------------------------
    def run(self, data: Any, *, name: str = "data", targets: torch.Tensor | None = None, progress: bool | None = None) -> RunResult:
        """Classify every item of ``data`` with each method; compute metrics and explanations."""
        targets = self._targets(data, targets, name)
        decisions = self._decide(data, name, progress)
        methods = {m: self._finish(d, targets, data) for m, d in decisions.items()}
        return RunResult(dataset=name, n=len(data), methods=methods)

    def cases(self, data: Any, indices: list[int], *, method: str = "knn", targets: torch.Tensor | None = None) -> list[Case]:
        """The `Case` of each query ``data[i]``, ``i`` in ``indices``, as decided by ``method``
        (``"knn"`` or a re-ranker of this pipeline) — what an Explainer reads."""
        if method not in self.methods:
            raise InputError(f"unknown method {method!r}; this pipeline runs {', '.join(self.methods)}")
        n = _length(data, "data")
        bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n]
        if bad:
            raise InputError(f"indices {bad[:5]} are not positions of the data set (0 .. {n - 1})")
        if not indices:
            return []
        tg = self._targets(data, targets, "data")[indices]
        sub = torch.utils.data.Subset(data, list(indices))
        dec = self._decide(sub, "cases", False, only=method)[method]
        out = []
        for j, i in enumerate(indices):
            case = self._case(dec, j, tg)
            case.query_id = i
            img = data[i][0]
            case.image = img if isinstance(img, torch.Tensor) else None
            out.append(case)
        return out

    def explain(self, data: Any, indices: list[int], explainer: Any, *, method: str = "knn") -> list[Explanation]:
        """Explain the queries ``data[i]``, ``i`` in ``indices``, with ``explainer`` (a component,
        or a registered explainer name) on the decisions of ``method``."""
        ex = registry.create("explainer", explainer) if isinstance(explainer, str) else explainer
        return [ex.explain(c) for c in self.cases(data, indices, method=method)]

    # -- internals ----------------------------------------------------------------------
    def _targets(self, data: Any, targets: torch.Tensor | None, name: str) -> torch.Tensor:
        if self.index is None:
            raise InputError("call fit(gallery) before run()")
        if _length(data, name) == 0:
            raise InputError(f"data set {name!r} is empty")
        return _labels_of(data, targets, "targets")

    def _decide(self, data: Any, name: str, progress: bool | None, only: str | None = None) -> dict[str, "Decisions"]:
        assert self.index is not None
        with torch.random.fork_rng(devices=[]):  # seeded for components that draw, caller's RNG state untouched
            torch.manual_seed(self.spec.seed)
            return self._decide_seeded(data, name, progress, only)

    def _decide_seeded(self, data: Any, name: str, progress: bool | None, only: str | None) -> dict[str, "Decisions"]:
        assert self.index is not None
        spec, f = self.spec, self.spec.features
        rerankers = [(n, r) for n, r in self._built.rerankers if only in (None, n)]
        pooled, maps = [], []
        for _, feats in self.encode(data, progress=progress, desc=name):
            pooled.append(feats.pooled[f.pooled_layer].detach().cpu())
            if rerankers:
                maps.append(feats.maps[f.spatial_layer].detach())
        q = torch.cat(pooled)
        k = spec.decision.k
        n_short = spec.shortlist if self._built.rerankers else k
        t0 = time.perf_counter()
        res = self.index.search(q, n_short)
        out: dict[str, Decisions] = {}
        if only in (None, "knn"):
            pred, votes = majority_vote(res.labels[:, :k], self.num_classes, spec.decision.tie_break)
            out["knn"] = Decisions(method="knn", predictions=pred, confidences=votes.float() / k, ids=res.ids[:, :k],
                                    labels=res.labels[:, :k], scores=res.scores[:, :k], seconds=time.perf_counter() - t0)
        if rerankers:
            qmaps = torch.cat(maps)
            assert self.store is not None
            if tuple(qmaps.shape[1:]) != tuple(self.store.map_shape):
                raise InputError(f"the queries' {f.spatial_layer} maps are {list(qmaps.shape[1:])} but the gallery's stored maps are "
                                 f"{list(self.store.map_shape)}: use images of the gallery's resolution (or fit the gallery again)")
            for rname, rr in rerankers:
                out[rname] = self._rerank(rname, rr, qmaps, res, progress)
        return out

    def _rerank(self, rname: str, rr: Any, qmaps: torch.Tensor, res: Any, progress: bool | None) -> Decisions:
        assert self.store is not None
        return rerank_decisions(rname, rr, qmaps, res, self.store, k=self.spec.decision.k, step=self.spec.features.batch_size,
                                num_classes=self.num_classes, tie_break=self.spec.decision.tie_break, progress=progress)

    @staticmethod
    def _case(d: "Decisions", i: int, targets: torch.Tensor) -> Case:
        return Case(query_id=i, target=int(targets[i]), prediction=int(d.predictions[i]), confidence=float(d.confidences[i]),
                    neighbour_ids=d.ids[i], neighbour_labels=d.labels[i], neighbour_scores=d.scores[i], method=d.method,
                    ranking=d.rankings[i] if d.rankings is not None else None,
                    shortlist_ids=d.shortlist_ids[i] if d.shortlist_ids is not None else None, grid=d.grid)

    def _finish(self, d: "Decisions", targets: torch.Tensor, data: Any) -> MethodResult:
        pred = d.predictions
        correct = (pred == targets).nonzero().flatten().tolist()
        wrong = (pred != targets).nonzero().flatten().tolist()
        chosen = correct[: self.spec.explain.correct] + wrong[: self.spec.explain.wrong]
        keyed: list[tuple[str, Explanation]] = []
        for i in chosen:
            case = self._case(d, i, targets)
            img = data[i][0]
            case.image = img if isinstance(img, torch.Tensor) else None
            keyed += self._explain_case_keyed(case)
        explanations = [e for _, e in keyed]
        metrics = self._metrics(d, targets, explanations, data=data, keyed=keyed)
        return MethodResult(method=d.method, predictions=pred, targets=targets, confidences=d.confidences, neighbour_ids=d.ids,
                            neighbour_labels=d.labels, metrics=metrics, explanations=explanations, seconds=d.seconds)


    def _pooled_one(self, image: torch.Tensor) -> torch.Tensor:
        """The index vector `[1, D]` of one image `[3, H, W]`."""
        x = self._check_images(image[None].float().to(self._device()))
        return self.extractor(x).pooled[self.spec.features.pooled_layer].cpu()

    def _explain_case(self, case: Case) -> list[Explanation]:
        """Every explainer of the spec that applies to ``case`` (its method and the fields it needs)."""
        return [e for _, e in self._explain_case_keyed(case)]

    def _explain_case_keyed(self, case: Case) -> list[tuple[str, Explanation]]:
        """`_explain_case` with each explanation's explainer key. The case gets the pipeline's model,
        and distractors or a pair when an explainer needs them (`case_inputs`)."""
        case.model = self.model
        if case.distractors is None and any("distractors" in getattr(ex, "requires", ()) for ex in self._built.explainers):
            add_distractors(case, gallery=self.gallery, index=self.index, pooled=self._pooled_one, n=self.spec.explain.distractors)
        if case.pair_image is None and any("pair_image" in getattr(ex, "requires", ()) for ex in self._built.explainers):
            add_pair(case, gallery=self.gallery)
        out = []
        for key, ex in zip(self._built.explainer_keys, self._built.explainers):
            allowed = ex.methods if isinstance(ex, MethodScopedExplainer) else None
            if allowed is not None and case.method not in allowed:
                continue  # e.g. an explainer of one re-ranker's decisions
            if any(getattr(case, fld, None) is None for fld in getattr(ex, "requires", ())):
                continue  # e.g. a ranking-based explainer on kNN decisions
            exp = ex.explain(case)
            if not isinstance(exp, Explanation):
                raise ComponentOutputError(f"{owner('explainer', getattr(ex, 'name', '?'), ex)} returned {type(exp).__name__}, "
                                           "not an Explanation")
            out.append((key, exp))
        return out

    def _metrics(self, d: "Decisions", targets: torch.Tensor, explanations: list[Explanation], *, data: Any = None,
                 keyed: list[tuple[str, Explanation]] | None = None) -> dict[str, MetricResult]:
        """Each metric of the spec over one method's decisions, with the inputs its ``requires``
        names (`xcorr_core.vocabulary`); a metric wired to an explainer reads only that one's outputs."""
        decisions = {"predictions": d.predictions, "targets": targets, "confidences": d.confidences, "neighbour_ids": d.ids,
                     "neighbour_labels": d.labels, "model": self.model}
        metrics = {}
        for mname, m in self._built.metrics:
            source = self._built.metric_explainer.get(mname)
            mine = explanations if source is None else [e for k, e in (keyed or []) if k == source]
            explain = self._view_explainer(source, mine) if source is not None else None
            inputs = metric_inputs(mname, frozenset(m.requires), decisions, mine, data, "queries", self.gallery, explain=explain)
            res = m.compute(**inputs)
            if not isinstance(res, MetricResult):
                raise ComponentOutputError(f"{owner('metric', mname, m)} returned {type(res).__name__}, not a MetricResult")
            metrics[mname] = res
        return metrics

    def _view_explainer(self, key: str, explanations: list[Explanation]) -> Any:
        """``explain(images [m, 3, H, W]) -> [m, H, W]``: explainer ``key`` run on other images of the
        m explained queries (e.g. augmented views), each for its query's decision."""
        ex = self._built.explainers[self._built.explainer_keys.index(key)]

        def explain(images: torch.Tensor) -> torch.Tensor:
            if images.shape[0] != len(explanations):
                raise InputError(f"explain() takes one image per explained query ({len(explanations)}), got {images.shape[0]}")
            maps = []
            for e, img in zip(explanations, images):
                out = ex.explain(Case(query_id=e.query_id, image=img, prediction=e.prediction, confidence=e.confidence, model=self.model))
                m = getattr(out, "maps", None)
                if not isinstance(m, torch.Tensor):
                    raise InputError(f"explain(): {type(out).__name__} ({key}) has no maps")
                maps.append(m if m.ndim == 3 else m[None])
            return torch.cat(maps)

        return explain

    def attach(self, index: GalleryIndex, store: Any = None, *, num_classes: int | None = None) -> "Pipeline":
        """Use a gallery built elsewhere (``xcorr index build``, a job's workers) instead of `fit`:
        ``index`` a `GalleryIndex`, ``store`` a `SpatialStore` or `ShardedStore` whose row i is the map
        of the index's row i (needed when the spec has re-rankers)."""
        if self._built.rerankers and store is None:
            raise InputError("this pipeline's re-rankers need the gallery's spatial store; pass store=")
        if store is not None and len(store) != len(index):
            raise InputError(f"the store holds {len(store)} maps but the index {len(index)} vectors")
        if len(index) < max(self.spec.decision.k, self.spec.shortlist if self._built.rerankers else 0):
            raise InputError(f"the gallery has {len(index)} items but the pipeline needs more neighbours per query")
        self.index, self.store = index, store
        self.num_classes = num_classes if num_classes is not None else int(index.labels.max()) + 1
        return self
