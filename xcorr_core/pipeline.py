"""`Pipeline`: the runner of a `PipelineSpec` (``xcorr_core.spec``) — feature extraction, a gallery
index, optional re-rankers, a decision rule, explainers and metrics; its results are the
`RunResult` / `MethodResult` models of ``xcorr_core.results``.

`Pipeline(spec)` validates everything up front (component names, configs, layer names, what each
explainer/metric needs) and raises `ConfigError` saying where in the spec the problem is. The spec
classes and results are re-exported here for compatibility. Depends on the core only.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn
from tqdm.auto import tqdm

from . import registry
from .components import BatchedReRanker, Case, CellReRanker, MethodScopedExplainer
from .errors import ComponentOutputError, ConfigError, InputError, LayerNotFoundError
from .features import FeatureExtractor, Features
from .index import GalleryIndex
from .knn import majority_vote
from .results import Explanation, MethodResult, MetricResult, Ranking, RunResult
from .spec import (
    ComponentSpec,
    DecisionSpec,
    ExplainSelection,
    FeatureSpec,
    IndexSpec,
    PipelineSpec,
    _unique_keys,
)
from .store import SpatialStore
from .validation import check_images
from .vocabulary import check_metric_inputs, metric_inputs

__all__ = ["load_model", "Decisions", "PipelineSpec", "ComponentSpec", "FeatureSpec", "IndexSpec", "DecisionSpec", "ExplainSelection",
           "Pipeline", "MethodResult", "RunResult"]

class _Built(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    rerankers: list[tuple[str, Any]]
    explainers: list[Any]
    metrics: list[tuple[str, Any]]
    explainer_keys: list[str] = []
    metric_explainer: dict[str, str | None] = {}  # metric key -> the explainer key whose outputs it reads


def _length(data: Any, name: str) -> int:
    """``len(data)`` of a Dataset or an image tensor `[N, 3, H, W]`; `InputError` for anything else."""
    if isinstance(data, torch.Tensor) and data.ndim != 4:
        raise InputError(f"{name}: an image tensor must be [N, 3, H, W], got shape {list(data.shape)}")
    try:
        return len(data)
    except TypeError as exc:
        raise InputError(f"{name} must be a Dataset with a length (or an image tensor), got {type(data).__name__}") from exc


def _labels_of(data: Any, given: torch.Tensor | None, what: str) -> torch.Tensor:
    """Long `[len(data)]` labels: ``given``, else ``data.labels``, else the second item of each sample."""
    if given is None:
        given = getattr(data, "labels", None)
        if given is None:
            if isinstance(data, torch.Tensor):
                raise InputError(f"data is a bare image tensor {list(data.shape)} with no labels: pass {what}= (long [N]) "
                                 "or a Dataset of (image, label)")
            try:
                given = torch.tensor([int(data[i][1]) for i in range(len(data))])
            except (TypeError, IndexError, ValueError) as exc:
                raise InputError(f"cannot read labels from the data's items ({type(exc).__name__}: {exc}); pass {what}=") from exc
    given = torch.as_tensor(given)
    if given.is_floating_point() or given.is_complex() or given.dtype == torch.bool:
        if given.dtype == torch.bool or not bool((given == given.round()).all()):
            raise InputError(f"{what} must be integer class ids, got {given.dtype} values")
    out = given.to(torch.int64)
    if out.shape != (len(data),):
        raise InputError(f"{what} must be [{len(data)}], got {list(out.shape)}")
    return out


def load_model(name: str, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """A model by name: shipped (``"birds"``, ``"herd"``), named by a plugin's ``register_models``, a
    SmallResNet checkpoint file, or a user's model ``timm:NAME`` / ``torchvision:NAME`` / ``hf:PATH`` /
    ``open_clip:NAME`` with local ``weights`` (see `xcorr_core.models.load_named_model`). Raises
    `ConfigError` listing the known names otherwise."""
    from .models import NAMED_PREFIXES, SHIPPED, load_checkpoint, load_named_model, load_pretrained

    if name.partition(":")[0] in NAMED_PREFIXES and ":" in name:
        return load_named_model(name, weights, **kwargs)
    if weights is not None or kwargs:
        raise ConfigError(f"features.weights / model_kwargs apply to timm: / torchvision: / hf: / open_clip: models, not {name!r}",
                          field="features.weights")
    if name in SHIPPED:
        return load_pretrained(name)  # type: ignore[arg-type]
    named = registry.models()
    if name in named:
        return named[name][1]()
    if Path(name).is_file():
        return load_checkpoint(name)
    known = ", ".join(list(SHIPPED) + sorted(named))
    raise ConfigError(f"features.model: {name!r} is neither a shipped or plugin model ({known}), a checkpoint file, nor "
                      "timm:NAME / torchvision:NAME / hf:PATH / open_clip:NAME", field="features.model")


def _owner(kind: str, name: str, comp: Any) -> str:
    """``re-ranker 'x' (plugin 'p')`` for error messages."""
    cls_name = getattr(type(comp), "name", name)
    plugin = next((c.plugin for c in registry.components(kind) if c.name == cls_name), "?")
    label = {"reranker": "re-ranker"}.get(kind, kind)
    return f"{label} {name!r} (plugin {plugin!r})"


def _check_ranking(ranking: Any, n: int, who: str) -> Ranking:
    """A re-ranker's output must be a `Ranking` whose ``order`` is a permutation of its n candidates."""
    if not isinstance(ranking, Ranking):
        raise ComponentOutputError(f"{who} returned {type(ranking).__name__}, not a Ranking")
    if ranking.scores.shape[0] != n:
        raise ComponentOutputError(f"{who} scored {ranking.scores.shape[0]} candidates, but it was given {n}")
    if not torch.equal(torch.sort(ranking.order.cpu()).values, torch.arange(n)):
        raise ComponentOutputError(f"{who} returned an order that is not a permutation of its {n} candidates: "
                                   f"{ranking.order.tolist()[:12]}{' ...' if n > 12 else ''}")
    return ranking


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
    def _build(self) -> _Built:
        spec = self.spec
        rr_specs = list(spec.rerankers)
        if spec.all_rerankers:
            named = {r.name for r in rr_specs}
            rr_specs += [ComponentSpec(name=c.name) for c in registry.components("reranker")
                         if c.name not in named and getattr(registry.get_class("reranker", c.name), "auto", True)]

        def make(kind: str, where: str, cs: ComponentSpec) -> Any:
            try:
                return registry.create(kind, cs.name, **cs.config)
            except ConfigError as exc:
                raise ConfigError(f"{where}.config: {exc}", field=f"{where}.config.{exc.field}") from exc
            except LookupError as exc:
                raise ConfigError(f"{where}.name: {exc}", field=f"{where}.name") from exc

        _unique_keys("rerankers", rr_specs, reserved={"knn"})
        _unique_keys("metrics", list(spec.metrics))
        rerankers = [(cs.key, make("reranker", f"rerankers[{i}]", cs)) for i, cs in enumerate(rr_specs)]
        if rerankers and not spec.features.spatial_layer:
            raise ConfigError("rerankers need spatial maps but features.spatial_layer is null", field="features.spatial_layer")
        if rerankers and spec.decision.k > spec.shortlist:
            raise ConfigError(f"decision.k={spec.decision.k} exceeds shortlist={spec.shortlist}", field="decision.k")
        available = set(Case.model_fields) - ({"ranking", "shortlist_ids"} if not rerankers else set())
        def checked(kind: str, where: str, cs: ComponentSpec, provided: set[str] | frozenset[str]) -> Any:
            comp = make(kind, where, cs)
            missing = set(getattr(comp, "requires", ())) - set(provided)
            if missing:
                raise ConfigError(f"{where} ({cs.name}) needs {sorted(missing)}; this pipeline provides {sorted(provided)}", field=where)
            return comp

        explainers = [checked("explainer", f"explainers[{i}]", cs, available) for i, cs in enumerate(spec.explainers)]
        explainer_keys = [cs.key for cs in spec.explainers]
        metrics, wiring = [], {}
        for i, cs in enumerate(spec.metrics):
            where, source = f"metrics[{i}]", cs.config.get("explainer")
            if source is not None and not isinstance(source, str):
                raise ConfigError(f"{where}.config.explainer: the key of an explainer, got {source!r}", field=f"{where}.config.explainer")
            m = make("metric", where, cs.model_copy(update={"config": {k: v for k, v in cs.config.items() if k != "explainer"}}))
            check_metric_inputs(where, cs.name, frozenset(getattr(m, "requires", ())), source, explainer_keys)
            metrics.append((cs.key, m))
            wiring[cs.key] = source
        return _Built(rerankers=rerankers, explainers=explainers, metrics=metrics, explainer_keys=explainer_keys,
                      metric_explainer=wiring)

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

    def _rerank(self, rname: str, rr: Any, qmaps: torch.Tensor, res: Any, progress: bool | None) -> "Decisions":
        k = self.spec.decision.k
        assert self.store is not None
        t0 = time.perf_counter()
        nq = qmaps.shape[0]
        order_ids = torch.empty(nq, k, dtype=torch.int64)
        order_labels = torch.empty(nq, k, dtype=torch.int64)
        order_scores = torch.empty(nq, k)
        rankings: dict[int, Ranking] = {}
        dev = qmaps.device
        many = rr.rerank_many if isinstance(rr, BatchedReRanker) else None
        # a re-ranker that reads cells gets them straight from a store in the cells layout
        cells_many = rr.rerank_cells_many if isinstance(rr, CellReRanker) and getattr(self.store, "layout", "maps") == "cells" else None
        step = self.spec.features.batch_size if callable(many) or callable(cells_many) else 1
        who = _owner("reranker", rname, rr)  # for error messages; looked up once, not per query
        n_short = res.positions.shape[1]
        for s0 in tqdm(range(0, nq, step), desc=rname, disable=(None if progress is None else not progress), leave=False):
            idx = list(range(s0, min(nq, s0 + step)))
            if callable(cells_many):
                cells = self.store.get_cells(res.positions[idx].flatten(), device=dev).unflatten((len(idx), n_short))
                out = cells_many(qmaps[idx].float(), cells)
                if not isinstance(out, (list, tuple)) or len(out) != len(idx):
                    raise ComponentOutputError(f"{who}: rerank_cells_many returned "
                                               f"{len(out) if isinstance(out, (list, tuple)) else type(out).__name__} rankings for {len(idx)} queries")
                self._keep_rankings(idx, out, n_short, who, res, order_ids, order_labels, order_scores, rankings, k)
                continue
            cands = self.store.get(res.positions[idx].flatten(), device=dev).unflatten(0, (len(idx), -1))
            if callable(many):
                out = many(qmaps[idx].float(), cands)
                if not isinstance(out, (list, tuple)) or len(out) != len(idx):
                    raise ComponentOutputError(f"{who}: rerank_many returned "
                                               f"{len(out) if isinstance(out, (list, tuple)) else type(out).__name__} rankings for {len(idx)} queries")
            else:
                out = [rr.rerank(qmaps[i].float(), cands[j]) for j, i in enumerate(idx)]
            self._keep_rankings(idx, out, cands.shape[1], who, res, order_ids, order_labels, order_scores, rankings, k)
        pred, votes = majority_vote(order_labels, self.num_classes, self.spec.decision.tie_break)
        return Decisions(method=rname, predictions=pred, confidences=votes.float() / k, ids=order_ids, labels=order_labels,
                          scores=order_scores, rankings=rankings, shortlist_ids=res.ids.cpu(), shortlist_scores=res.scores.cpu(),
                          grid=tuple(self.store.map_shape[1:]), seconds=time.perf_counter() - t0)

    @staticmethod
    def _keep_rankings(idx: list[int], out: Any, n: int, who: str, res: Any, order_ids: torch.Tensor, order_labels: torch.Tensor,
                       order_scores: torch.Tensor, rankings: dict[int, Ranking], k: int) -> None:
        """Check each query's ranking of its ``n`` candidates and keep its top ``k``."""
        for i, ranking in zip(idx, out):
            ranking = _check_ranking(ranking, n, who)
            top = ranking.order[:k].cpu()
            order_ids[i], order_labels[i] = res.ids[i][top], res.labels[i][top]
            order_scores[i] = ranking.scores.cpu()[top]
            rankings[i] = ranking.to("cpu")

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


    def _explain_case(self, case: Case) -> list[Explanation]:
        """Every explainer of the spec that applies to ``case`` (its method and the fields it needs)."""
        return [e for _, e in self._explain_case_keyed(case)]

    def _explain_case_keyed(self, case: Case) -> list[tuple[str, Explanation]]:
        """`_explain_case` with each explanation's explainer key. The case gets the pipeline's model,
        and distractors when an explainer needs them."""
        case.model = self.model
        if case.distractors is None and any("distractors" in getattr(ex, "requires", ()) for ex in self._built.explainers):
            self._add_distractors(case)
        out = []
        for key, ex in zip(self._built.explainer_keys, self._built.explainers):
            allowed = ex.methods if isinstance(ex, MethodScopedExplainer) else None
            if allowed is not None and case.method not in allowed:
                continue  # e.g. an explainer of one re-ranker's decisions
            if any(getattr(case, fld, None) is None for fld in getattr(ex, "requires", ())):
                continue  # e.g. a ranking-based explainer on kNN decisions
            exp = ex.explain(case)
            if not isinstance(exp, Explanation):
                raise ComponentOutputError(f"{_owner('explainer', getattr(ex, 'name', '?'), ex)} returned {type(exp).__name__}, "
                                           "not an Explanation")
            out.append((key, exp))
        return out

    def _add_distractors(self, case: Case) -> None:
        """``case.distractors``: up to ``explain.distractors`` gallery images of the nearest gallery
        class other than the prediction, nearest to the query first (needs the gallery `fit` kept)."""
        if self.gallery is None or self.index is None or case.image is None or case.prediction is None:
            return
        f, n, total = self.spec.features, self.spec.explain.distractors, len(self.index)
        with torch.no_grad():
            q = self.extractor(self._check_images(case.image[None].float().to(self._device()))).pooled[f.pooled_layer].cpu()
        k = min(total, max(64, 4 * n))
        while True:
            res = self.index.search(q, k)
            labels, ids = res.labels[0], res.ids[0]
            other = labels[labels != case.prediction]
            cls = int(other[0]) if len(other) else None
            if k >= total or (cls is not None and int((labels == cls).sum()) >= n):
                break
            k = min(total, 4 * k)
        if cls is None:
            return
        pick = ids[labels == cls][:n]
        case.distractor_class, case.distractor_ids = cls, pick
        case.distractors = torch.stack([self.gallery[int(i)][0] for i in pick])

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
            inputs = metric_inputs(mname, frozenset(m.requires), decisions, mine, data, "queries", self.gallery)
            res = m.compute(**inputs)
            if not isinstance(res, MetricResult):
                raise ComponentOutputError(f"{_owner('metric', mname, m)} returned {type(res).__name__}, not a MetricResult")
            metrics[mname] = res
        return metrics

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


class Decisions(BaseModel):
    """One method's decisions over a data set (internal)."""

    model_config = {"arbitrary_types_allowed": True}
    method: str
    predictions: torch.Tensor
    confidences: torch.Tensor
    ids: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    rankings: dict[int, Ranking] | None = None
    shortlist_ids: torch.Tensor | None = None
    shortlist_scores: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    seconds: float = 0.0
