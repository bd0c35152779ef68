"""The explainers on the shipped SynthBirds model: decisions flip, errors are clear, results serialise."""
from __future__ import annotations

import pytest
import torch

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.models import load_pretrained
from xcorr_scc_counterfactual import Counterfactual, GoyalExplainer, SCCExplainer, load_auxiliary, split_model
from xcorr_scc_counterfactual.explainer import edited_features


@pytest.fixture(scope="module")
def birds():
    return load_pretrained("birds"), SynthBirds("test", per_class=4)


def _pair(model, ds, q=0, n=4):
    x = ds.images.float() / 255
    with torch.no_grad():
        pred = model(x).argmax(1)
    c = int(ds.labels[q])
    other = (c + 1) % len(ds.class_names)
    ids = [i for i in range(len(ds)) if int(ds.labels[i]) == other and int(pred[i]) == other][:n]
    return x[q], x[ids], ids, other


@pytest.mark.parametrize("q", [0, 5, 11])
def test_counterfactuals_flip_the_shipped_model(birds, q):
    model, ds = birds
    query, dist, ids, other = _pair(model, ds, q)
    split = split_model(model, "layer4")
    aux = load_auxiliary("classifier", model)
    authors = SCCExplainer().explain_images(split, query, dist, aux, distractor_ids=ids)
    # the authors' pre-filter (top 10 % of all pairs by raw cosine) may keep too few query cells to flip
    assert authors.success or authors.reason == "no_candidates"
    for ex in (SCCExplainer(SCCExplainer.Config(prefilter_by="log_softmax", prefilter_rounding="ceil")), GoyalExplainer(),
               SCCExplainer(SCCExplainer.Config(path="generic", prefilter=1.0))):
        cf = ex.explain_images(split, query, dist, aux, distractor_ids=ids)
        assert cf.success and cf.target_class == other and cf.query_class == int(model(query[None]).argmax())
        edited = edited_features(split, query, dist, cf)
        with torch.no_grad():
            assert int(split.logits(edited[None]).argmax()) == other  # re-applied independently
        if isinstance(ex, GoyalExplainer):
            assert {e.distractor for e in cf.edits} == {0} and cf.candidates == 49 * 49


def test_generic_and_closed_form_agree_on_the_shipped_model(birds):
    model, ds = birds
    query, dist, _, _ = _pair(model, ds, 2)
    aux = load_auxiliary("classifier", model)
    a = SCCExplainer().explain_images(model, query, dist, aux)
    b = SCCExplainer(SCCExplainer.Config(path="generic", chunk=100)).explain_images(model, query, dist, aux)
    assert a.path == "closed_form" and b.path == "generic"
    assert [e.model_dump(exclude={"score", "log_prob_target"}) for e in a.edits] == [e.model_dump(exclude={"score", "log_prob_target"}) for e in b.edits]


def test_bad_inputs(birds):
    model, ds = birds
    query, dist, _, _ = _pair(model, ds, 0)
    aux = load_auxiliary("classifier", model)
    ex = SCCExplainer()
    with pytest.raises(xc.InputError, match="at least one distractor"):
        ex.explain_images(model, query, dist[:0], aux)
    same = ds.images[[i for i in range(len(ds)) if int(ds.labels[i]) == int(ds.labels[0])][1:3]].float() / 255
    with pytest.raises(xc.InputError, match="query's own class"):
        ex.explain_images(model, query, same, aux)
    with pytest.raises(xc.InputError, match="differ in size"):
        ex.explain_images(model, query, torch.nn.functional.interpolate(dist, size=96), aux)
    with pytest.raises(xc.InputError, match="auxiliary model"):
        ex.explain_images(model, query, dist)
    mixed = torch.cat([dist[:1], same[:1]])
    with pytest.raises(xc.InputError, match="query's own class|not classified"):
        ex.explain_images(model, query, mixed, aux, target=int(model(dist[:1]).argmax()))
    with pytest.raises(xc.InputError, match="explain_images"):
        ex.explain(xc.Case(image=query))
    model.train()
    try:
        with pytest.raises(xc.InputError, match="training mode"):
            ex.explain_images(model, query, dist, aux)
    finally:
        model.eval()


def test_registry_json_and_figure(birds, tmp_path):
    model, ds = birds
    xc.reload_plugins()
    names = {(c.kind, c.name) for c in xc.components() if c.plugin == "scc_counterfactual"}
    assert {("explainer", "scc"), ("explainer", "goyal"), ("metric", "same_kp"), ("metric", "near_kp"),
            ("metric", "num_edits"), ("metric", "in_box")} <= names
    ex = xc.create("explainer", "scc", prefilter=0.2, distractors=2)
    with pytest.raises(xc.ConfigError, match="prefilter"):
        xc.create("explainer", "scc", prefilter=0)
    query, dist, ids, _ = _pair(model, ds, 3)
    cf = ex.explain_images(model, query, dist, load_auxiliary("classifier", model), distractor_ids=ids)
    assert cf.n_distractors == 2 and cf.distractor_ids == ids[:2]
    back = Counterfactual.from_json(cf.to_json())
    assert back == cf
    from xcorr_core.viz import save_figure

    fig = cf.plot(query, dist, class_names=ds.class_names)
    assert len(fig.axes) == 1 + len({e.distractor for e in cf.edits})
    path = save_figure(fig, tmp_path / "cf.png")
    assert path.stat().st_size > 5000
