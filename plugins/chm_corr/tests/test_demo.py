"""The demo section on small data: its shared-transfer path gives exactly the chm_corr re-ranker's
decisions, and it reports the tables and figures it promises."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.demo import DemoContext
from xcorr_core.models import load_pretrained as load_core
from xcorr_chm_corr import load_pretrained
from xcorr_chm_corr.demo import chm_corr_decisions, chm_corr_section


@pytest.fixture(scope="module")
def small():
    train, test = SynthBirds("train", per_class=3), SynthBirds("test", per_class=2)
    pipe = xc.Pipeline({"rerankers": [{"name": "chm_corr"}], "shortlist": 12, "decision": {"k": 5}, "explainers": []},
                       model=load_core("birds"))
    pipe.fit(train, progress=False)
    return pipe, train, test


def test_shared_transfers_equal_the_reranker(small):
    pipe, _, test = small
    res = pipe.run(test, name="test", progress=False)
    dec = chm_corr_decisions(pipe, test, load_pretrained(), keypoints=test.keypoints)
    assert torch.equal(dec["chm_corr"]["predictions"], res.methods["chm_corr"].predictions)
    assert torch.equal(dec["chm_corr"]["ids"], res.methods["chm_corr"].neighbour_ids)
    assert set(dec) == {"chm_corr", "chm_corr_plus"}


def test_section_reports_tables_and_figures(small, tmp_path: Path, monkeypatch):
    pipe, train, test = small
    monkeypatch.setenv("XCORR_CHM_DEMO_QUERIES", "12")
    results = [pipe.run(test, name="test", progress=False)]
    ctx = DemoContext(out=tmp_path, progress=False, birds_model=pipe.model, herd_model=None, birds_train=train,
                      birds_test={"test": test}, herd_test=None, pipeline=pipe, results=results)
    (tmp_path / "figures").mkdir()
    sec = chm_corr_section(ctx)
    entry = sec.report["by_dataset"]["test"]
    assert entry["n"] == 12 and {"knn", "chm_corr", "chm_corr_plus"} <= set(entry)
    assert all(0 <= entry[m]["accuracy"] <= 1 and 0 <= entry[m]["mcnemar_exact_p_vs_knn"] <= 1 for m in ("chm_corr", "chm_corr_plus"))
    assert set(sec.report["pck"]) == {"class", "genus"}
    assert sec.report["pck"]["class"]["chm"]["pck@0.1"] > sec.report["pck"]["class"]["argmax"]["pck@0.1"]
    assert 1 <= len(sec.figures) <= 2 and all((tmp_path / f).stat().st_size > 5000 for f in sec.figures)
    assert sec.html.count("<table>") == 2
    monkeypatch.setenv("XCORR_CHM_DEMO_QUERIES", "zero")
    with pytest.raises(ValueError, match="XCORR_CHM_DEMO_QUERIES"):
        chm_corr_section(ctx)
