"""Fuzzing the public entry points (issue 15): for any input, either a documented result or one of
the library's typed errors (`XcorrError`), never another exception. Each test counts its inputs in
``FUZZ_COUNTS`` (printed at the end of the session with ``-s``)."""
from __future__ import annotations

import atexit
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_core.store import SpatialStore

FUZZ_COUNTS: Counter[str] = Counter()
atexit.register(lambda: print("\nfuzz inputs tried:", dict(FUZZ_COUNTS)))
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4)
dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])


@st.composite
def tensors(draw, shape=shapes, dtype=dtypes):
    """Any shape and dtype; values random at a drawn scale, some replaced by a drawn special value."""
    shp = draw(shape)
    dt = draw(dtype)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 255.0, 1e-30, 1e30, -1.0]))
    t = torch.rand(shp, generator=g) * scale
    special = draw(st.sampled_from([None, math.nan, math.inf, -math.inf, 0.0, 7e4]))
    if special is not None and t.numel():
        t.view(-1)[torch.randint(t.numel(), (max(1, t.numel() // 7),), generator=g)] = special
    if dt == torch.bool:
        return t > 0.5
    if not dt.is_floating_point:
        return torch.nan_to_num(t, 0, 0, 0).clamp(-100, 300).to(dt)
    return t.to(dt)


def typed_or_ok(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except xc.XcorrError:
        return None


@FUZZ
@given(metric=st.sampled_from(["cosine", "ip", "l2"]), vecs=tensors(), labels=st.one_of(st.none(), tensors()), q=tensors(),
       k=st.one_of(st.integers(-2, 8), st.floats(-1, 5), st.booleans(), st.none()))
def test_index_add_and_search(metric, vecs, labels, q, k) -> None:
    FUZZ_COUNTS["GalleryIndex.add/search"] += 1
    idx = xc.GalleryIndex(3, metric)
    typed_or_ok(idx.add, vecs, labels)
    res = typed_or_ok(idx.search, q, k)
    if res is not None:
        assert res.ids.shape == (q.shape[0], k) and bool(torch.isfinite(res.scores).all())


@FUZZ
@given(images=tensors(shape=st.lists(st.integers(0, 40), min_size=0, max_size=5)), layer=st.sampled_from(["layer4", "layer2", "fc", "nope", ""]))
def test_feature_extractor(tiny_model, images, layer) -> None:
    FUZZ_COUNTS["FeatureExtractor"] += 1
    fx = typed_or_ok(xc.FeatureExtractor, tiny_model, [layer])
    if fx is not None:
        out = typed_or_ok(fx, images)
        if out is not None:
            assert out.pooled[layer].shape[0] == images.shape[0]


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=8))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                              st.dictionaries(st.text(max_size=12), inner, max_size=3)), max_leaves=8)
spec_keys = st.sampled_from(["features", "index", "shortlist", "rerankers", "all_rerankers", "decision", "explainers", "metrics",
                             "explain", "seed", "k", "name", "config", "as", "metric", "kind", "model", "pooled_layer"])
spec_like = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(spec_keys, inner, max_size=4)),
                         max_leaves=12)


@FUZZ
@given(data=st.one_of(spec_like, json_values))
def test_spec_parse_and_build(tiny_model, data) -> None:
    FUZZ_COUNTS["PipelineSpec.parse + Pipeline"] += 1
    spec = typed_or_ok(xc.PipelineSpec.parse, data)
    if spec is not None:
        typed_or_ok(xc.Pipeline, spec, model=tiny_model)


@FUZZ
@given(text=st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1"))), suffix=st.sampled_from([".yaml", ".json"]))
def test_spec_files(tmp_path_factory, text, suffix) -> None:
    FUZZ_COUNTS["PipelineSpec.from_file"] += 1
    p = tmp_path_factory.mktemp("spec") / f"s{suffix}"
    p.write_bytes(text.encode("utf-8", "surrogatepass") if text.isascii() else text.encode("latin-1", "replace"))
    typed_or_ok(xc.PipelineSpec.from_file, p)


@FUZZ
@given(n=st.integers(-1, 4), shape=st.lists(st.integers(-1, 3), min_size=0, max_size=4), maps=tensors(), start=st.integers(-2, 4))
def test_spatial_store(tmp_path_factory, n, shape, maps, start) -> None:
    FUZZ_COUNTS["SpatialStore.create/write/finalize/get"] += 1
    d = tmp_path_factory.mktemp("store")
    store = typed_or_ok(SpatialStore.create, d / "s", n, tuple(shape))
    if store is None:
        return
    typed_or_ok(store.write, start, maps)
    done = store.finalize()
    typed_or_ok(done.get, [start, 0])


@pytest.fixture(scope="module")
def fitted(tiny_model, tiny_birds):
    return xc.Pipeline({"decision": {"k": 3}}, model=tiny_model).fit(tiny_birds[0], progress=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(images=tensors(shape=st.lists(st.sampled_from([0, 1, 2, 3, 4, 32]), min_size=0, max_size=5)),
       labels=st.one_of(st.none(), tensors(shape=st.lists(st.integers(0, 3), max_size=2))),
       indices=st.lists(st.one_of(st.integers(-3, 5), st.floats(0, 2)), max_size=3))
def test_pipeline_run_and_cases(fitted, images, labels, indices) -> None:
    FUZZ_COUNTS["Pipeline.run/cases"] += 1
    data = images
    if labels is not None and images.ndim >= 1 and labels.ndim == 1 and labels.shape[0] == images.shape[0]:
        data = torch.utils.data.TensorDataset(images, labels)
    typed_or_ok(fitted.run, data, progress=False)
    typed_or_ok(fitted.cases, data, indices)


@settings(max_examples=60, deadline=None)
@given(argv=st.lists(st.sampled_from(["plugins", "components", "--json", "--kind", "metric", "reranker", "bogus", "--version",
                                      "demo", "--quick", "--out", "-", "", "--no-progress", "x" * 3]), max_size=4))
def test_cli_main(argv) -> None:
    FUZZ_COUNTS["cli.main"] += 1
    from xcorr_core import cli

    argv = [a for a in argv if a != "demo"]  # the demo has its own test (it takes minutes)
    try:
        rc = cli.main(argv)
        assert rc in (0, 1, 2)
    except SystemExit as exc:  # argparse: usage errors exit 2, --version/--help exit 0
        assert exc.code in (0, 2)
    except xc.XcorrError:
        pass


_EXPLAINERS: dict = {}
special_values = st.sampled_from([None, math.nan, math.inf, 0.0, 1e30, -1.0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from([((256, 7, 7), (5, 256, 7, 7)), ((256, 7, 7), (0, 256, 7, 7)), ((256, 7, 7), (5, 128, 7, 7)),
                              ((256, 7, 7), (5, 256, 14, 14)), ((256,), (5, 256)), ((256, 7, 7), (5, 256, 7, 7, 1))]),
       special=special_values, seed=st.integers(0, 1000))
def test_every_installed_reranker(all_plugins, shape, special, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    q, c = torch.rand(shape[0], generator=g), torch.rand(shape[1], generator=g)
    if special is not None:
        q.view(-1)[0] = special
        c.view(-1)[:3] = special
    for info in xc.components("reranker"):
        FUZZ_COUNTS[f"reranker {info.name}"] += 1
        out = typed_or_ok(xc.create("reranker", info.name).rerank, q, c)
        assert out is None or isinstance(out, xc.Ranking)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(image=st.sampled_from([None, (3, 112, 112), (1, 112, 112), (3, 8, 8)]), special=special_values,
       prediction=st.one_of(st.none(), st.integers(-2, 30)), k=st.integers(0, 6), grid=st.sampled_from([None, (7, 7), (2, 3)]))
def test_every_installed_explainer(all_plugins, image, special, prediction, k, grid) -> None:
    img = None if image is None else torch.rand(image)
    if img is not None and special is not None:
        img.view(-1)[:5] = special
    case = xc.Case(query_id=0, image=img, prediction=prediction, target=prediction, neighbour_ids=torch.arange(k),
                   neighbour_labels=torch.arange(k) % 3, neighbour_scores=torch.rand(k), method="knn", grid=grid)
    for info in xc.components("explainer"):
        for cfg in ({}, {"model": "birds"}):
            key = (info.name, tuple(cfg))
            if key not in _EXPLAINERS:  # built once: some load a model
                _EXPLAINERS[key] = typed_or_ok(xc.create, "explainer", info.name, **cfg)
            ex = _EXPLAINERS[key]
            if ex is None:
                continue
            FUZZ_COUNTS[f"explainer {info.name}"] += 1
            out = typed_or_ok(ex.explain, case)
            assert out is None or isinstance(out, xc.Explanation)
