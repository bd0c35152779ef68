"""The study summary: means and t-intervals over seeds, by hand."""
import json

import pytest

from xcorr_protoknn.study import load_study, summarise


def run(row, seed, clean1, var):
    acc = {"k=1": clean1, "k=3": 0.5, "k=5": 0.5, "k=10": 0.5, "linear_head": 0.4}
    return {"row": row, "seed": seed, "steps": 10, "variance": var, "clean": acc, "sticker": acc, "style": acc}


def test_summary_by_hand(tmp_path):
    runs = [run("full", 0, 0.8, 0.9), run("full", 1, 0.9, 0.8), run("full", 2, 1.0, 0.7), run("no_aux", 0, 0.5, 0.5)]
    (tmp_path / "s.json").write_text(json.dumps({"runs": runs}))
    s = summarise(load_study(tmp_path / "s.json"))
    m, h = s["full"]["clean k=1"]
    assert m == pytest.approx(0.9) and h == pytest.approx(4.302652730 * 0.1 / 3**0.5)  # t(0.975, 2 dof), exact since issue 28
    assert s["full"]["seeds"] == 3 and s["full"]["variance"][0] == pytest.approx(0.8)
    assert s["no_aux"]["seeds"] == 1 and s["no_aux"]["clean k=1"][1] != s["no_aux"]["clean k=1"][1]  # NaN: one seed
    assert load_study(tmp_path / "missing.json") == []
