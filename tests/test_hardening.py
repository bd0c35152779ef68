"""No silent wrong answers: what issue 15's first section found (fit all-or-nothing, duplicate
component names, query/store grid mismatch, plugin outputs checked at the boundary)."""
from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import torch

import xcorr_core as xc
from xcorr_core.store import SpatialStore


class Reverse(xc.ReRanker):
    name = "hard_reverse"
    summary = "reverse order"

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> xc.Ranking:
        n = candidates.shape[0]
        scores = torch.arange(n, dtype=torch.float32)
        return xc.Ranking(order=torch.argsort(scores, descending=True), scores=scores,
                          pairs=torch.zeros(n, 1, 2, dtype=torch.int64), weights=torch.ones(n, 1))


class Broken(xc.ReRanker):
    """Returns a chosen bad output."""

    name = "hard_broken"
    summary = "broken on purpose"
    mode = "repeat"

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> object:
        n = candidates.shape[0]
        if Broken.mode == "none":
            return None
        if Broken.mode == "short":
            n -= 1
            order = torch.arange(n)
        elif Broken.mode == "repeat":
            order = torch.zeros(n, dtype=torch.int64)  # not a permutation: would give the top candidate k times
        else:  # out of range
            order = torch.arange(n) + 5
        return xc.Ranking(order=order, scores=torch.zeros(n), pairs=torch.zeros(n, 1, 2, dtype=torch.int64), weights=torch.ones(n, 1))


class FloatMetric(xc.Metric):
    name = "hard_float_metric"
    summary = "returns a float"

    def compute(self, **data):
        return 0.5


class NoneExplainer(xc.Explainer):
    name = "hard_none_explainer"
    summary = "returns None"

    def explain(self, case):
        return None


def _register() -> None:
    mod = types.ModuleType("hard")
    mod.register_rerankers = xc.hookimpl(lambda register: (register(Reverse), register(Broken)))
    mod.register_metrics = xc.hookimpl(lambda register: register(FloatMetric))
    mod.register_explainers = xc.hookimpl(lambda register: register(NoneExplainer))
    assert xc.register_plugin(mod, name="hard").error is None


class Failing(torch.utils.data.Dataset):
    """A gallery whose item ``bad`` raises (an unreadable image, or Ctrl-C)."""

    def __init__(self, base, bad: int, exc: BaseException) -> None:
        self.base, self.bad, self.exc = base, bad, exc
        self.labels = base.labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        if i == self.bad:
            raise self.exc
        return self.base[i]


@pytest.mark.parametrize("exc", [OSError("unreadable image"), KeyboardInterrupt()])
def test_failed_fit_keeps_the_old_gallery_and_leaves_no_temp_file(tiny_model, tiny_birds, tmp_path: Path, exc) -> None:
    _register()
    train, test = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "hard_reverse"}]}, model=tiny_model,
                       work_dir=tmp_path)
    before = pipe.fit(train, progress=False).run(test, progress=False)
    old_index, old_store = pipe.index, pipe.store
    other = xc.data.SynthBirds("train", per_class=4, seed=5, progress=False)
    with pytest.raises(type(exc)):
        pipe.fit(Failing(other, bad=len(other) - 3, exc=exc), progress=False)
    assert pipe.index is old_index and pipe.store is old_store
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    after = pipe.run(test, progress=False)
    for m in before.methods:
        assert torch.equal(before.methods[m].predictions, after.methods[m].predictions)


def test_store_files_are_not_private(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    store = SpatialStore.from_tensor(tmp_path / "s", torch.rand(2, 3, 2, 2))
    assert os.stat(store.path).st_mode & 0o777 == 0o666 & ~umask


def test_abort_removes_the_unfinished_store(tmp_path: Path) -> None:
    store = SpatialStore.create(tmp_path / "s", 4, (2, 2, 2))
    store.write(0, torch.rand(2, 2, 2, 2))
    store.abort()
    assert os.listdir(tmp_path) == []


def test_negative_labels_rejected_at_fit(tiny_model, tiny_birds) -> None:
    train, _ = tiny_birds
    labels = train.labels.clone()
    labels[3] = -1
    with pytest.raises(xc.InputError, match=">= 0"):
        xc.Pipeline({"decision": {"k": 5}}, model=tiny_model).fit(train, labels=labels)


def test_duplicate_names_rejected_and_aliases_run_both(tiny_model, tiny_birds) -> None:
    _register()
    with pytest.raises(xc.ConfigError, match=r"metrics\[1\].*also metrics\[0\].*as:"):
        xc.Pipeline({"metrics": [{"name": "top1_accuracy"}, {"name": "top1_accuracy"}]}, model=tiny_model)
    with pytest.raises(xc.ConfigError, match=r"rerankers\[1\]"):
        xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "hard_reverse"}, {"name": "hard_reverse"}]},
                    model=tiny_model)
    with pytest.raises(xc.ConfigError, match="reserved"):
        xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "hard_reverse", "as": "knn"}]}, model=tiny_model)
    train, test = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10},
                        "rerankers": [{"name": "hard_reverse"}, {"name": "hard_reverse", "as": "reverse_again"}],
                        "metrics": [{"name": "top1_accuracy"}, {"name": "mean_confidence", "as": "conf"}]}, model=tiny_model)
    assert pipe.methods == ["knn", "hard_reverse", "reverse_again"]
    res = pipe.fit(train, progress=False).run(test, progress=False)
    assert set(res.methods["reverse_again"].metrics) == {"top1_accuracy", "conf"}
    assert torch.equal(res.methods["hard_reverse"].predictions, res.methods["reverse_again"].predictions)


def test_query_grid_must_match_the_store(tiny_model, tiny_birds) -> None:
    _register()
    train, _ = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "hard_reverse"}]}, model=tiny_model)
    pipe.fit(train, progress=False)
    big = xc.data.SynthBirds("test", per_class=1, size=224, progress=False)
    with pytest.raises(xc.InputError, match=r"\[256, 14, 14\].*\[256, 7, 7\]"):
        pipe.run(big, progress=False)


@pytest.mark.parametrize("mode, match", [("repeat", "not a permutation"), ("short", "scored 29 candidates"),
                                         ("out_of_range", "not a permutation"), ("none", "NoneType, not a Ranking")])
def test_bad_rankings_name_the_component_and_plugin(tiny_model, tiny_birds, mode, match) -> None:
    _register()
    Broken.mode = mode
    train, test = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "hard_broken"}]}, model=tiny_model)
    pipe.fit(train, progress=False)
    with pytest.raises(xc.ComponentOutputError, match=rf"re-ranker 'hard_broken' \(plugin 'hard'\).*{match}"):
        pipe.run(test, progress=False)


def test_bad_metric_and_explainer_outputs(tiny_model, tiny_birds) -> None:
    _register()
    train, test = tiny_birds
    pipe = xc.Pipeline({"decision": {"k": 5}, "metrics": [{"name": "hard_float_metric"}]}, model=tiny_model).fit(train, progress=False)
    with pytest.raises(xc.ComponentOutputError, match=r"metric 'hard_float_metric' \(plugin 'hard'\) returned float"):
        pipe.run(test, progress=False)
    pipe = xc.Pipeline({"decision": {"k": 5}, "explainers": [{"name": "hard_none_explainer"}]}, model=tiny_model).fit(train, progress=False)
    with pytest.raises(xc.ComponentOutputError, match=r"explainer 'hard_none_explainer' \(plugin 'hard'\) returned NoneType"):
        pipe.run(test, progress=False)


# -- numbers, specs, plugins, RNG ----------------------------------------------------------------

def test_store_rejects_values_beyond_float16_and_detects_a_flipped_byte(tmp_path: Path) -> None:
    store = SpatialStore.create(tmp_path / "big", 1, (1, 2, 2))
    with pytest.raises(xc.InputError, match="float16 range"):
        store.write(0, torch.full((1, 1, 2, 2), 7e4))
    store.abort()
    s = SpatialStore.from_tensor(tmp_path / "m", torch.rand(3, 4, 2, 2))
    raw = bytearray(s.path.read_bytes())
    raw[-3] ^= 0x10
    s.path.write_bytes(bytes(raw))
    with pytest.raises(xc.IndexFileError, match="checksum"):
        SpatialStore.open(tmp_path / "m")
    SpatialStore.open(tmp_path / "m", verify=False)  # the caller's choice


def test_huge_vectors_are_searched_correctly_or_rejected() -> None:
    idx = xc.GalleryIndex(3, "cosine")
    v = torch.tensor([[1e30, 0.0, 0.0], [0.0, 1e30, 0.0]])
    idx.add(v, torch.tensor([0, 1]))
    res = idx.search(torch.tensor([[0.0, 2e30, 1e29]]), 1)
    assert int(res.ids[0, 0]) == 1 and float(res.scores[0, 0]) > 0.99
    with pytest.raises(xc.InputError, match="1e18"):
        xc.GalleryIndex(3, "l2").add(v)
    with pytest.raises(xc.InputError, match="must be an int"):
        idx.search(v, 2.5)  # type: ignore[arg-type]


def test_labels_must_be_integers_and_data_must_say_its_labels(tiny_model, tiny_birds) -> None:
    train, test = tiny_birds
    pipe = xc.Pipeline({"decision": {"k": 5}}, model=tiny_model)
    with pytest.raises(xc.InputError, match="integer class ids"):
        pipe.fit(train, labels=train.labels.float() + 0.5)
    pipe.fit(train, labels=train.labels.float(), progress=False)  # integral floats are fine
    with pytest.raises(xc.InputError, match="bare image tensor"):
        pipe.run(test.images.float() / 255, progress=False)
    with pytest.raises(xc.InputError, match="not positions"):
        pipe.cases(test, [999])


def test_meta_device_queries_are_a_clear_error(tiny_model) -> None:
    with pytest.raises(xc.InputError, match="meta"):
        xc.FeatureExtractor(tiny_model, ["layer4"])(torch.empty(1, 3, 32, 32, device="meta"))


@pytest.mark.parametrize("content, match", [
    (b"\xff\xfe k: 3", "UTF-8"),
    (b"", "empty"),
    (b"# only a comment\n", "empty"),
    (b"decision: {k: 3}\ndecision: {k: 5}\n", "duplicate key 'decision'"),
    (b"decision:\n  k: true\n", "decision.k"),
    (b"- 1\n- 2\n", "mapping"),
])
def test_spec_files_are_read_strictly(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "spec.yaml"
    p.write_bytes(content)
    with pytest.raises(xc.ConfigError, match=match):
        xc.PipelineSpec.from_file(p)


def test_json_spec_duplicate_keys(tmp_path: Path) -> None:
    p = tmp_path / "spec.json"
    p.write_text('{"seed": 1, "seed": 2}')
    with pytest.raises(xc.ConfigError, match="duplicate key 'seed'"):
        xc.PipelineSpec.from_file(p)


def test_emd_eps_must_be_finite(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xcorr_emd_corr")
    monkeypatch.delenv("XCORR_PLUGINS")
    xc.reload_plugins()
    with pytest.raises(xc.ConfigError, match="eps"):
        xc.create("reranker", "emd_corr", eps=float("inf"))


def test_plugins_env_typo_warns_with_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    names = sorted(ep.name for ep in md.entry_points(group="xcorr"))
    monkeypatch.setenv("XCORR_PLUGINS", "emd_corrr")
    with pytest.warns(UserWarning, match=r"'emd_corrr', which is not installed; installed plugins: " + ", ".join(names)):
        xc.reload_plugins()
        xc.plugins()


def test_misspelled_and_unmarked_hooks_are_reported() -> None:
    mod = types.ModuleType("typo")
    mod.register_metric = xc.hookimpl(lambda register: register(FloatMetric))
    info = xc.register_plugin(mod, name="typo")
    assert info.error is not None and "Did you mean 'register_metrics'" in info.error
    bare = types.ModuleType("bare")
    bare.register_metrics = lambda register: register(FloatMetric)
    with pytest.warns(UserWarning) as rec:
        xc.register_plugin(bare, name="bare")
    msgs = [str(w.message) for w in rec]
    assert any("register_metrics() is not marked @xcorr_core.hookimpl" in m for m in msgs)
    assert any("registers nothing" in m for m in msgs)


def test_a_default_that_breaks_its_own_constraint_is_refused() -> None:
    from pydantic import Field

    class Bad(xc.Metric):
        name = "bad_default"
        summary = "k defaults to 0 but must be >= 1"

        class Config(xc.StrictConfig):
            k: int = Field(0, ge=1)

        def compute(self, **data):
            raise NotImplementedError

    mod = types.ModuleType("bad_default")
    mod.register_metrics = xc.hookimpl(lambda register: register(Bad))
    info = xc.register_plugin(mod, name="bad_default")
    assert info.error is not None and "Config.k: its default 0 breaks its own constraint" in info.error


def test_run_leaves_the_callers_rng_alone(tiny_model, tiny_birds) -> None:
    train, test = tiny_birds
    pipe = xc.Pipeline({"decision": {"k": 5}, "seed": 7}, model=tiny_model).fit(train, progress=False)
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    pipe.run(test, progress=False)
    assert torch.equal(torch.rand(3), want)


# -- images ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda x: x.permute(0, 2, 3, 1).contiguous(), "channels-last"),
    (lambda x: x[:, :1], "1 channel"),
    (lambda x: torch.cat([x, x[:, :1]], 1), "4 channels"),
    (lambda x: x * 255, "divide by 255"),
    (lambda x: (x * 255).to(torch.uint8), "uint8"),
])
def test_bad_image_batches_are_rejected_with_the_fix(tiny_model, tiny_birds, make, match) -> None:
    train, test = tiny_birds
    pipe = xc.Pipeline({"decision": {"k": 5}}, model=tiny_model).fit(train, progress=False)
    x = test.images[:4].float() / 255
    data = torch.utils.data.TensorDataset(make(x), test.labels[:4])
    with pytest.raises(xc.InputError, match=match):
        pipe.run(data, progress=False)


def test_float64_images_are_converted(tiny_model, tiny_birds) -> None:
    train, test = tiny_birds
    pipe = xc.Pipeline({"decision": {"k": 5}}, model=tiny_model).fit(train, progress=False)
    x = test.images[:6].float() / 255
    a = pipe.run(torch.utils.data.TensorDataset(x, test.labels[:6]), progress=False)
    b = pipe.run(torch.utils.data.TensorDataset(x.double(), test.labels[:6]), progress=False)
    assert torch.equal(a.methods["knn"].predictions, b.methods["knn"].predictions)


def test_16_bit_png_is_scaled_not_white(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from xcorr_core.data.real import open_rgb

    ramp = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    img = np.asarray(open_rgb(tmp_path / "g16.png"))
    assert img.shape == (8, 8, 3) and img.min() == 0 and img.max() == 255
    assert abs(int(img[4, 0, 0]) - round(ramp[4, 0] / 257)) <= 1


def test_register_plugin_is_idempotent_for_the_same_object() -> None:
    mod = types.ModuleType("twice")
    mod.register_metrics = xc.hookimpl(lambda register: register(FloatMetric))
    first = xc.register_plugin(mod, name="twice")
    assert first.error is None
    assert xc.register_plugin(mod, name="twice") is first
    assert xc.register_plugin(mod, name="other_name") is first
    with pytest.raises(ValueError, match="already registered"):
        xc.register_plugin(types.ModuleType("x"), name="twice")


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports (relative or absolute, at module level or
    inside functions), for every .py file under ``package`` (subpackages included)."""
    import ast

    top = package.name
    graph: dict[str, set[str]] = {}
    for f in package.rglob("*.py"):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        pkg = parts[:-1]  # the package the file's relative imports start from
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[: len(pkg) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] == top:
                    deps.add(mod)
                    deps |= {f"{mod}.{a.name}" for a in node.names}  # `from . import x` names a module
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == top}
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _circles(graph: dict[str, set[str]]) -> list[str]:
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    # a package's __init__ re-exporting its modules is not a circle: leave packages out as targets
    packages = {m for m in graph if any(k.startswith(m + ".") for k in graph)}
    g = {m: deps - packages for m, deps in graph.items() if m not in packages}
    graph = g
    return sorted(m for m in graph if m in reach(m))


PACKAGES = [Path(xc.__file__).parent] + sorted((Path(xc.__file__).parents[1] / "plugins").glob("*/xcorr_*"))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_import_circle(package: Path) -> None:
    """No module of the core or of any plugin reaches itself through imports of its own package,
    module-level or inside functions (issue 15 item 12; issue 28: subpackages and plugins too)."""
    circles = _circles(_import_graph(package))
    assert circles == [], f"modules on an import circle in {package.name}: {circles}"


def test_the_circle_finder_sees_function_level_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "xcorr_demo_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub.b import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    assert _circles(_import_graph(pkg)) == ["xcorr_demo_pkg.a", "xcorr_demo_pkg.sub.b"]


def test_iter_batches_prepare_is_applied(tiny_model) -> None:
    """The getting-started store snippet normalises as the index did, through ``prepare``."""
    x = torch.rand(5, 3, 32, 32)
    fx = xc.FeatureExtractor(tiny_model, ["layer4"])
    got = torch.cat([f.maps["layer4"] for _, f in fx.iter_batches(x, batch_size=2, prepare=lambda b: b * 0.5)])
    torch.testing.assert_close(got, fx(x * 0.5).maps["layer4"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_check_finite_catches_every_bad_value_and_passes_sums_that_overflow(dtype) -> None:
    """The fast path sums first; a finite tensor whose sum overflows must still pass, and any NaN / inf
    (also +inf and -inf together, whose sum is NaN) must be reported with its count."""
    from xcorr_core.validation import check_finite

    big = torch.finfo(dtype).max
    check_finite("x", torch.full((4, 3), big, dtype=dtype))  # sum overflows to inf: every value is finite
    check_finite("x", torch.tensor([big, -big, big], dtype=dtype))
    check_finite("x", torch.empty(0, dtype=dtype))
    check_finite("ids", torch.tensor([1, 2, 3]))  # integers are never checked
    for bad, n in (([1.0, float("nan")], 1), ([float("inf"), float("-inf"), 2.0], 2), ([float("-inf")] * 3, 3)):
        with pytest.raises(xc.InputError, match=f"x contains {n} NaN/inf"):
            check_finite("x", torch.tensor(bad, dtype=dtype))


def test_no_module_outside_pipeline_reads_its_private_names() -> None:
    """issue 28: jobs, plugins, examples and benchmarks use the pipeline's public stages (encode,
    decide, case, explain_case, measure, ...), never its private methods or attributes."""
    import ast

    from xcorr_core.pipeline import Pipeline

    private = {n for n in vars(Pipeline) if n.startswith("_") and not n.startswith("__")} | {"_built"}
    root = Path(xc.__file__).parents[1]
    files = [f for d in ("xcorr_core", "plugins", "examples", "benchmarks", "scripts") for f in (root / d).rglob("*.py")
             if "build" not in f.parts and f.name != "pipeline.py"]
    uses = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            on_self = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if isinstance(node, ast.Attribute) and node.attr in private and not on_self:  # other classes' own names
                uses.append(f"{f.relative_to(root)}:{node.lineno} .{node.attr}")
    assert len(files) > 100 and uses == [], uses
