"""The shipped model: loads as outside checks use it, its file round-trips, the explainer and the
demo section run on it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.demo import DemoContext
from xcorr_core.models import load_pretrained as load_core
from xcorr_protoknn import load_model, load_pretrained, save_model
from xcorr_protoknn.demo import protoknn_section
from xcorr_protoknn.pretrained import model_card, shipped_path


def test_load_pretrained_and_profiles():
    model = load_pretrained()
    imgs = SynthBirds("test", per_class=1).images[:4].float() / 255
    with torch.no_grad():
        s = model.profiles(imgs)
    assert s.shape == (4, 128) and bool((s.abs() <= 1 + 1e-5).all())
    card = model_card()
    assert card["accuracy"]["clean"]["k=1"] > 0.5 and card["projection_duplicates"] >= 0


def test_file_round_trip_and_errors(tmp_path: Path):
    model, proj = load_model(shipped_path())
    save_model(model, tmp_path / "m.pt", projection=proj)
    again, proj2 = load_model(tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert proj2 is not None and torch.equal(proj2.source_ids, proj.source_ids)
    (tmp_path / "x.pt").write_bytes(b"nope")
    with pytest.raises(xc.IndexFileError):
        load_model(tmp_path / "x.pt")
    torch.save({"format": "other"}, tmp_path / "y.pt")
    with pytest.raises(xc.IndexFileError, match="not an xcorr ProtoKNN"):
        load_model(tmp_path / "y.pt")


def test_explainer_component_on_a_case():
    ex = xc.create("explainer", "protoknn", top=2)
    img = SynthBirds("test", per_class=1).image(3)
    exp = ex.explain(xc.Case(query_id=3, image=img))
    assert exp.method == "protoknn" and exp.top.numel() == 2
    assert exp.difference == pytest.approx(float(exp.contributions.sum()), abs=1e-4)
    with pytest.raises(xc.InputError):
        ex.explain(xc.Case(query_id=0))


def test_demo_section(tmp_path: Path):
    ctx = DemoContext(out=tmp_path, progress=False, birds_model=load_core("birds"), herd_model=None,
                      birds_train=SynthBirds("train", per_class=6), birds_test={"test": SynthBirds("test", per_class=2)}, herd_test=None)
    (tmp_path / "figures").mkdir()
    sec = protoknn_section(ctx)
    e = sec.report["by_dataset"]["test"]
    assert {f"protoknn_k{k}" for k in (1, 3, 5, 10)} <= set(e) and "linear_head" in e
    assert 0 < sec.report["prototype_variance"] <= 1 and 0 <= sec.report["part_purity"] <= 1
    assert 1 <= len(sec.figures) <= 2 and all((tmp_path / f).stat().st_size > 5000 for f in sec.figures)


def test_example_pipeline_spec_runs():
    spec = Path(__file__).resolve().parents[3] / "examples" / "protoknn_pipeline.yaml"
    pipe = xc.Pipeline(spec)
    assert "profile" in dict(pipe.model.named_modules())
    pipe.fit(SynthBirds("train", per_class=3), progress=False)
    res = pipe.run(SynthBirds("test", per_class=1), name="t", progress=False)
    acc = res.methods["knn"].metrics["protoknn_accuracy"]
    assert set(acc.details) == {"k=1", "k=3", "k=5", "k=10"}
    assert all(e.method == "protoknn" for e in res.methods["knn"].explanations)
