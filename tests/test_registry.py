"""Hooks and registry: registration, failures isolated, errors that name things."""
from __future__ import annotations

import types
from typing import Any

import pytest
import torch

import xcorr_core as xc
from xcorr_core import registry


class GoodReRanker(xc.ReRanker):
    name = "test_identity"
    summary = "keeps the input order"

    class Config(xc.StrictConfig):
        pairs: int = 5

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> xc.Ranking:
        n = candidates.shape[0]
        return xc.Ranking(order=torch.arange(n), scores=-torch.arange(n, dtype=torch.float32),
                          pairs=torch.zeros(n, self.config.pairs, 2, dtype=torch.long), weights=torch.zeros(n, self.config.pairs))


def _plugin(**hooks: Any) -> types.ModuleType:
    mod = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(mod, name, xc.hookimpl(fn))
    return mod


def test_builtins_are_listed_with_schema() -> None:
    infos = {(c.kind, c.name): c for c in xc.components()}
    assert ("explainer", "nearest_neighbours") in infos and ("metric", "top1_accuracy") in infos
    info = infos[("explainer", "nearest_neighbours")]
    assert info.plugin == "xcorr_core" and info.version == xc.__version__
    assert info.config_schema["properties"]["top"]["default"] == 5


def test_register_plugin_and_create() -> None:
    def register_rerankers(register):
        register(GoodReRanker)

    info = xc.register_plugin(_plugin(register_rerankers=register_rerankers), name="fake")
    assert info.error is None and [c.name for c in info.components] == ["test_identity"]
    assert [c.name for c in xc.components("reranker")] == ["test_identity"]
    rr = xc.create("reranker", "test_identity", pairs=3)
    assert rr.config.pairs == 3
    assert rr.rerank(torch.zeros(2, 3, 3), torch.zeros(4, 2, 3, 3)).pairs.shape == (4, 3, 2)


def test_config_error_names_the_field() -> None:
    with pytest.raises(xc.ConfigError, match="'ci_level'") as e:
        xc.create("metric", "top1_accuracy", ci_level=1.5)
    assert e.value.field == "ci_level" and isinstance(e.value, ValueError)
    with pytest.raises(xc.ConfigError, match="unknown config field 'bogus'"):
        xc.create("metric", "top1_accuracy", bogus=1)


def test_unknown_component_lists_what_exists() -> None:
    with pytest.raises(xc.UnknownComponentError, match="available metrics: mean_confidence, top1_accuracy") as e:
        xc.create("metric", "accuracy")
    assert isinstance(e.value, LookupError)
    with pytest.raises(ValueError, match="unknown kind"):
        xc.components("nonsense")


def test_bad_registrations_are_reported_not_raised() -> None:
    class NoConfig:
        name, summary = "x", "y"

        def rerank(self, q, c):
            ...

    def register_rerankers(register):
        register(GoodReRanker)
        register(NoConfig)

    info = xc.register_plugin(_plugin(register_rerankers=register_rerankers), name="bad")
    assert "Config" in info.error
    assert xc.components("reranker") == []  # all or nothing per plugin

    def boom(register):
        raise RuntimeError("kaboom")

    info = xc.register_plugin(_plugin(register_matchers=boom), name="boom")
    assert info.error == "RuntimeError: kaboom"
    assert {p.name for p in xc.plugins()} >= {"xcorr_core", "bad", "boom"}


def test_missing_method_and_duplicates() -> None:
    class NoMethod(xc.Component):
        name, summary = "nm", "no rerank"

    info = xc.register_plugin(_plugin(register_rerankers=lambda register: register(NoMethod)), name="nm")
    assert "no rerank() method" in info.error
    xc.register_plugin(_plugin(register_rerankers=lambda register: register(GoodReRanker)), name="one")
    info = xc.register_plugin(_plugin(register_rerankers=lambda register: register(GoodReRanker)), name="two")
    assert "already registered by plugin 'one'" in info.error
    with pytest.raises(ValueError, match="already registered"):
        xc.register_plugin(types.ModuleType("x"), name="one")


class _EP:
    def __init__(self, name: str, target: Any, version: str = "9.9") -> None:
        self.name, self._target = name, target
        self.dist = types.SimpleNamespace(version=version)

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, eps: list[_EP]) -> None:
    monkeypatch.setattr(registry.md, "entry_points", lambda group: eps if group == "xcorr" else [])
    xc.reload_plugins()


def test_failing_entry_point_is_reported_and_others_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCORR_PLUGINS")
    good = _plugin(register_rerankers=lambda register: register(GoodReRanker))
    _fake_entry_points(monkeypatch, [_EP("broken", ImportError("No module named 'torch_scatter'")), _EP("good", good)])
    by_name = {p.name: p for p in xc.plugins()}
    assert "No module named 'torch_scatter'" in by_name["broken"].error
    assert by_name["good"].error is None and by_name["good"].version == "9.9"
    assert [c.name for c in xc.components("reranker")] == ["test_identity"]


def test_env_var_selects_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _plugin(register_rerankers=lambda register: register(GoodReRanker))
    monkeypatch.delenv("XCORR_PLUGINS")
    _fake_entry_points(monkeypatch, [_EP("good", good)])
    assert [c.name for c in xc.components("reranker")] == ["test_identity"]
    monkeypatch.setenv("XCORR_PLUGINS", "")
    _fake_entry_points(monkeypatch, [_EP("good", good)])
    assert xc.components("reranker") == [] and [p.name for p in xc.plugins()] == ["xcorr_core"]
    monkeypatch.setenv("XCORR_PLUGINS", "good")
    xc.reload_plugins()
    assert [c.name for c in xc.components("reranker")] == ["test_identity"]


def test_demo_sections_isolate_failures() -> None:
    """One policy for every hook: a plugin whose demo-section hook raises is recorded as failed and
    adds nothing (no section, no component), the others load."""
    def register_demo_sections(register):
        register("ok", lambda ctx: {"title": "ok"})

    def bad(register):
        raise ValueError("nope")

    def register_rerankers(register):
        register(GoodReRanker)

    good = xc.register_plugin(_plugin(register_demo_sections=register_demo_sections), name="s1")
    failed = xc.register_plugin(_plugin(register_demo_sections=bad, register_rerankers=register_rerankers), name="s2")
    assert good.error is None and failed.error == "ValueError: nope" and failed.components == []
    assert [t for p, t, _ in registry.demo_sections() if p in ("s1", "s2")] == ["ok"]
    assert "test_identity" not in {c.name for c in xc.components("reranker")}  # never half-registered
    assert {p.name: p.error for p in xc.plugins()}["s2"] == "ValueError: nope"


def test_models_follow_the_same_policy() -> None:
    def good(register):
        register("tiny_a", lambda: None, "a model")

    def not_callable(register):
        register("tiny_b", "not a loader")

    def taken(register):
        register("tiny_a", lambda: None)

    assert xc.register_plugin(_plugin(register_models=good), name="m1").error is None
    assert "not callable" in xc.register_plugin(_plugin(register_models=not_callable), name="m2").error
    assert xc.register_plugin(_plugin(register_models=taken), name="m3").error == \
        "RegistrationError: model 'tiny_a' is already named by plugin 'm1'"
    assert "tiny_a" in registry.models() and "tiny_b" not in registry.models()
    with pytest.raises(xc.RegistrationError, match="already registered"):
        xc.register_plugin(_plugin(register_models=good), name="m1")



def test_a_bad_config_field_is_a_config_error_everywhere() -> None:
    """issue 28: constructing any StrictConfig with a bad field is a ConfigError naming class and
    field; nested configs keep their full location; the registry still names the component."""
    with pytest.raises(xc.ConfigError, match=r"GoodReRanker.Config: invalid field 'pairs'") as e:
        GoodReRanker.Config(pairs="many")
    assert e.value.field == "pairs" and isinstance(e.value, ValueError)
    with pytest.raises(xc.ConfigError, match=r"PipelineSpec: invalid field 'features.batch_size'"):
        xc.PipelineSpec(features={"batch_size": 0})
    with pytest.raises(xc.ConfigError, match=r"metric 'top1_accuracy': invalid config field 'ci_level'"):
        xc.create("metric", "top1_accuracy", ci_level=2.0)
    # assigning a bad value (or an unknown field) to a built config is the same ConfigError; the old value stays
    spec = xc.PipelineSpec()
    with pytest.raises(xc.ConfigError, match=r"PipelineSpec: invalid field 'shortlist'") as e:
        spec.shortlist = 0
    assert e.value.field == "shortlist" and spec.shortlist == xc.PipelineSpec().shortlist
    with pytest.raises(xc.ConfigError, match=r"FeatureSpec: invalid field 'batch_size'"):
        spec.features.batch_size = -1
    with pytest.raises(xc.ConfigError, match=r"invalid field 'no_such'"):
        spec.no_such = 1
    spec.shortlist = 7
    assert spec.shortlist == 7
