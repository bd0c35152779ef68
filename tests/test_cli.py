"""CLI: version, plugin listing (failures named, not fatal), the demo's outputs."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import xcorr_core as xc
from xcorr_core import cli, registry
from xcorr_core.data import SynthBirds


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and xc.__version__ in capsys.readouterr().out


def test_plugins_lists_failures(monkeypatch, capsys) -> None:
    class EP:
        name, dist = "broken", types.SimpleNamespace(version="1.2")

        def load(self):
            raise ModuleNotFoundError("No module named 'cupy'")

    monkeypatch.delenv("XCORR_PLUGINS")
    monkeypatch.setattr(registry.md, "entry_points", lambda group: [EP()] if group == "xcorr" else [])
    xc.reload_plugins()
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "broken 1.2  [FAILED: ModuleNotFoundError: No module named 'cupy'" in out and "nearest_neighbours" in out
    assert cli.main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"]: d["error"] for d in data}["broken"].startswith("ModuleNotFoundError")


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("xcorr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "xcorr_core.cli"]
    out = subprocess.run(cmd + ["components", "--json"], capture_output=True, text=True, check=True).stdout
    assert "top1_accuracy" in {c["name"] for c in json.loads(out)}


def test_quick_demo_writes_report_figures_and_html(tmp_path: Path) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), "--quick", "--no-progress"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    titles = [s["title"] for s in report["sections"]]
    assert all(s["error"] is None for s in report["sections"]), report["sections"]
    cls = next(s for s in report["sections"] if s["title"].startswith("SynthBirds classification"))
    assert set(cls["report"]["results"]) == {"test", "sticker", "style"}
    assert 0 <= cls["report"]["results"]["test"]["knn"]["top1_accuracy"] <= 1
    figs = [f for s in report["sections"] for f in s["figures"]]
    assert figs and all((tmp_path / f).stat().st_size > 1000 for f in figs)
    html = (tmp_path / "index.html").read_text()
    assert all(html.count(f"src='{f}'") == 1 for f in figs) and len(figs) == len(set(figs)) and len(titles) >= 3
    assert all(s["seconds"] is not None and s["seconds"] >= 0 for s in report["sections"]) and report["data_seconds"] >= 0
    own = {p for p, _, _ in registry.demo_sections()}
    shown_elsewhere = {c.name for c in registry.components("reranker") if c.plugin in own}
    # a re-ranker whose plugin has its own section is explained there, not a second time under classification
    assert not [f for f in cls["figures"] if any(f"explain_{m}_" in f for m in shown_elsewhere)]
    # the ViT section: kNN over the shipped ViT's CLS token and 7 x 7 patch tokens; with no plugin loaded here, the
    # parts that need one are skipped with the pip install that adds them
    vit = next(s for s in report["sections"] if s["title"] == "The same explanations on a ViT")
    assert vit["report"]["layout"] == {"kind": "tokens", "prefix_tokens": 1, "grid": [7, 7]}
    assert vit["report"]["methods"] == ["knn"] and 0 < vit["report"]["test"]["knn"]["top1_accuracy"] <= 1
    assert any("plugins/pairx" in m for m in vit["report"]["skipped"]) and "Skipped" in html
    # no plugin is loaded in the core's tests: every project plugin's section is listed as skipped, with its install
    skipped = {s["plugin"]: s for s in report["skipped_sections"]}
    assert set(skipped) == {"emd_corr", "chm_corr", "cgc", "human_team_sim", "pairx", "protoknn", "scc_counterfactual"}
    assert skipped["pairx"]["install"].startswith("pip install plugins/pairx") and "Sections skipped" in html
    # the browser section: the demo pipeline as a job over the same test images, and its site, linked from the report
    br = next(s for s in report["sections"] if s["title"] == "Browse the SynthBirds job")["report"]
    assert br["methods"] == ["knn"] and br["queries"] == len(SynthBirds("test", per_class=2, progress=False)) and br["errors"] == 0
    assert br["top1_accuracy"]["knn"] == pytest.approx(cls["report"]["results"]["test"]["knn"]["top1_accuracy"])
    assert (tmp_path / "browse" / "index.html").is_file() and (tmp_path / "job" / "manifest.json").is_file()
    assert "href='browse/index.html'" in html and "href='browse/index.html#wrong=knn'" in html


def test_plugins_lists_named_models(capsys) -> None:
    import types

    import xcorr_core as xc
    from xcorr_core.cli import main

    mod = types.ModuleType("named_model_plugin")
    mod.register_models = xc.hookimpl(lambda register: register("cli_test_model", lambda: None, "a model for the CLI test"))
    xc.register_plugin(mod, name="named_model_plugin")
    assert main(["plugins"]) == 0
    assert "model     cli_test_model" in capsys.readouterr().out
    assert main(["plugins", "--json"]) == 0
    import json

    listed = {p["name"]: p["models"] for p in json.loads(capsys.readouterr().out)}
    assert listed["named_model_plugin"] == ["cli_test_model"]


def test_the_demo_knows_each_project_plugins_section(all_plugins) -> None:
    """The skipped-section list names the titles the installed plugins register (and nothing is skipped then)."""
    from xcorr_core.demo import PROJECT_PLUGINS, _skipped_sections

    registered = {p: t for p, t, _ in registry.demo_sections() if p in PROJECT_PLUGINS}
    assert registered == {p: PROJECT_PLUGINS[p] for p in registered}
    assert [s["plugin"] for s in _skipped_sections()] == [p for p in PROJECT_PLUGINS if p not in registered]
