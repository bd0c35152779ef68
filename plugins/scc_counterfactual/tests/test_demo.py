"""The demo section runs on small data and reports every table and figure it promises."""
from __future__ import annotations

from pathlib import Path

from xcorr_core.data import SynthBirds
from xcorr_core.demo import DemoContext
from xcorr_core.models import load_pretrained
from xcorr_scc_counterfactual.demo import scc_section


def test_demo_section(tmp_path: Path) -> None:
    ctx = DemoContext(out=tmp_path, progress=False, birds_model=load_pretrained("birds"), herd_model=None,
                      birds_train=SynthBirds("train", per_class=6), birds_test={"test": SynthBirds("test", per_class=2)}, herd_test=None)
    (tmp_path / "figures").mkdir()
    sec = scc_section(ctx)
    assert [r["name"][:2].strip() for r in sec.report["table3"]] == ["1", "2", "3", "4", "5", "5b"]
    assert [r["name"][:2].strip() for r in sec.report["table3_parts_aux"]] == ["2", "4", "5", "5b"]
    rules = [(r["config"]["prefilter_by"], r["config"]["prefilter_rounding"]) for r in sec.report["table3"][4:]]
    assert rules == [("cosine", "floor"), ("log_softmax", "ceil")]  # row 5 is the authors' rule
    assert [r["config"]["semantic_weight"] for r in sec.report["lambda_sweep"]] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6]
    assert len(sec.report["table4"]) == 3 and all(len(r["kmeans"]) == 3 for r in sec.report["table4"])
    assert len(sec.report["attributes"]["rows"]) == 3
    assert len(sec.figures) == 5 and all((tmp_path / f).stat().st_size > 5000 for f in sec.figures)
    assert all(e["edits"] for e in sec.report["examples"])
    assert "<table>" in sec.html
