"""The shipped study file, the shipped fine-tuned models and the demo section."""
import json
import math
from pathlib import Path

import pytest
import torch

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.demo import DemoContext
from xcorr_core.models import load_pretrained as load_core
from xcorr_cgc.demo import cgc_section, study_table
from xcorr_cgc.pretrained import load_pretrained
from xcorr_cgc.study import load_study, summarise


def test_study_file_has_every_mode_and_seed():
    study = load_study()
    runs = study["runs"]
    assert {(r["mode"], r["seed"]) for r in runs} >= {(m, s) for m in ("ce", "cgc", "cgc_noneg") for s in (0, 1, 2)}
    n = study["config"]["steps"]
    assert n >= 100 and all(len(r["metrics"]["top1_clean"]) == 240 for r in runs)
    summary = summarise(runs)
    assert summary["cgc"]["seeds"] == 3 and all(math.isfinite(summary["cgc"][k][1]) for k in ("top1_clean", "ch", "insertion"))
    rows, header = study_table(summary)
    assert len(rows) == 4 and len(header) == 2 + 7


@pytest.mark.parametrize("which", ["ce", "cgc"])
def test_shipped_models_reproduce_their_study_rows(which):
    model = load_pretrained(which)
    test = SynthBirds("test", progress=False)
    with torch.no_grad():
        ok = (model(test.images.float() / 255).argmax(1) == test.labels).int().tolist()
    row = next(r for r in load_study()["runs"] if r["mode"] == which and r["seed"] == 0)
    # float16 storage may flip a borderline image or two
    assert abs(sum(ok) - sum(row["metrics"]["top1_clean"])) <= 2
    assert which == "cgc" or xc.create("explainer", "gradcam", model="birds_ce").explain(xc.Case(image=test[0][0])).maps.shape == (1, 112, 112)


def test_missing_weights_are_a_clear_error():
    with pytest.raises(xc.InputError, match="'ce' or 'cgc'"):
        load_pretrained("sgd")  # type: ignore[arg-type]


def test_demo_section(tmp_path: Path):
    ctx = DemoContext(out=tmp_path, progress=False, birds_model=load_core("birds"), herd_model=None,
                      birds_train=None, birds_test={"test": SynthBirds("test", per_class=2, progress=False)}, herd_test=None)
    (tmp_path / "figures").mkdir()
    sec = cgc_section(ctx)
    assert set(sec.report["study"]) == {"shipped", "ce", "cgc", "cgc_noneg"}
    live = sec.report["CE + CGC"]
    assert 0 <= live["ch"] <= 100 and -1 <= live["consistency"] <= 1 and 0 <= live["insertion_auc_48"] <= 1
    assert len(sec.figures) == 2 and all((tmp_path / f).stat().st_size > 5000 for f in sec.figures)
    json.dumps(sec.report)
