"""Auxiliary models: resampling to f's grid, the shipped models, the training targets and losses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.data.synth_birds import PART_NAMES
from xcorr_core.models import SmallResNet, load_pretrained, save_checkpoint
from xcorr_scc_counterfactual import AuxiliaryModel, PartsDetector, load_auxiliary, load_parts_detector
from xcorr_scc_counterfactual.auxiliary import aux_card, resample_grid
from xcorr_scc_counterfactual.metrics import part_clustering_accuracy
from xcorr_scc_counterfactual.training import nt_xent, part_targets


def test_resampling_to_the_grid():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert resample_grid(x, (4, 4)) is x
    board = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float().view(1, 1, 8, 8)
    down = resample_grid(board, (4, 4))
    assert torch.allclose(down, torch.full_like(down, 0.5), atol=0.15)  # antialiased: no aliasing of the checkerboard
    assert torch.allclose(resample_grid(torch.full((1, 2, 14, 14), 3.0), (7, 7)), torch.full((1, 2, 7, 7), 3.0))
    up = resample_grid(x, (8, 8))
    assert up.shape == (1, 1, 8, 8) and float(up.min()) >= 0 and float(up.max()) <= 15
    aux = AuxiliaryModel.from_layer(load_pretrained("birds"), "layer3")  # 14x14 -> 7x7
    assert aux(torch.rand(2, 3, 112, 112), (7, 7)).shape == (2, 128, 7, 7)
    with pytest.raises(xc.InputError, match="must return"):
        AuxiliaryModel(lambda x: x.mean((2, 3)), "flat")(torch.rand(1, 3, 8, 8), (2, 2))
    with pytest.raises(xc.InputError, match="unknown auxiliary"):
        load_auxiliary("dino")  # type: ignore[arg-type]
    with pytest.raises(xc.InputError, match="needs the classifier"):
        load_auxiliary("classifier")


def test_part_targets_by_hand():
    kp = torch.zeros(1, 3, 3)
    kp[0, 0] = torch.tensor([5.0, 5.0, 1])  # part 0 in cell 0 (16 px cells at 32 px, 2x2 grid)
    kp[0, 1] = torch.tensor([8.0, 2.0, 1])  # part 1 also in cell 0
    kp[0, 2] = torch.tensor([20.0, 20.0, 0])  # invisible
    t = part_targets(kp, (2, 2), 32)
    assert t.shape == (1, 4, 2, 2)
    assert t[0, :, 0, 0].tolist() == [0.0, 0.5, 0.5, 0.0]
    assert t[0, 0, 1, 1] == 1.0 and t[0, 0, 0, 1] == 1.0  # background elsewhere


def test_nt_xent_prefers_aligned_views():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    aligned = nt_xent(z, z, 0.2)
    shuffled = nt_xent(z, z[torch.randperm(8, generator=g)], 0.2)
    assert float(aligned) < float(shuffled)


def test_shipped_auxiliary_models():
    card = aux_card()
    assert {"parts", "ssl"} <= card.keys() and card["ssl"]["labels_used"] is False
    det = load_parts_detector()
    ds = SynthBirds("test", per_class=2)
    x = ds.images.float() / 255
    probs = det.cell_probs(x)
    assert probs.shape == (len(ds), 1 + len(PART_NAMES), 7, 7)
    assert torch.allclose(probs.sum(1), torch.ones(len(ds), 7, 7), atol=1e-5)
    assert det.top_parts(x, 3).shape == (len(ds), 49, 3)
    # the parts detector's cells cluster into parts far better than the classifier's (Table 4's ordering)
    ssl = load_auxiliary("ssl")(x, (7, 7))
    clf = load_auxiliary("classifier", load_pretrained("birds"))(x, (7, 7))
    acc = {name: part_clustering_accuracy(u, ds.keypoints, 112, k=15) for name, u in
           (("parts", probs), ("ssl", ssl), ("classifier", clf))}
    assert acc["parts"] > 0.9 and acc["parts"] > acc["classifier"]


def test_parts_detector_checks_its_head(tmp_path):
    path = save_checkpoint(SmallResNet(5), tmp_path / "bad.pt")
    from xcorr_core.models import load_checkpoint

    with pytest.raises(xc.InputError, match="outputs"):
        PartsDetector(load_checkpoint(path), PART_NAMES)


def test_study_reuses_f_for_the_classifiers_own_features() -> None:
    """The 'classifier' auxiliary model at the split layer is f itself: the study takes f's features
    (no second pass) and they equal what the auxiliary model computes; another layer is computed."""
    from xcorr_core.data import SynthBirds

    from xcorr_scc_counterfactual import split_model
    from xcorr_scc_counterfactual.study import prepare_study

    model = load_pretrained("birds")
    test, pool = SynthBirds("test", per_class=1, progress=False), SynthBirds("train", per_class=1, progress=False)
    data = prepare_study(split_model(model, "layer4"), test, pool)
    aux = load_auxiliary("classifier", model)
    q, p = data.aux(aux)
    assert q.data_ptr() == data.q_feats.data_ptr()  # shared, not recomputed
    torch.testing.assert_close(q, aux(test.images.float() / 255, (7, 7)))
    torch.testing.assert_close(p, aux(pool.images.float() / 255, (7, 7)))
    other = load_auxiliary("classifier", model, layer="layer3")
    q3, _ = data.aux(other)
    assert q3.data_ptr() != data.q_feats.data_ptr()
    torch.testing.assert_close(q3, other(test.images.float() / 255, (7, 7)))


def test_study_takes_precomputed_features_and_checks_them() -> None:
    """Features computed elsewhere (the demo's shared classifier maps) give the same study data as the
    study's own pass; a wrong count, a wrong shape or a NaN is refused."""
    from xcorr_core.data import SynthBirds

    from xcorr_scc_counterfactual import split_model
    from xcorr_scc_counterfactual.study import prepare_study

    model = load_pretrained("birds")
    test, pool = SynthBirds("test", per_class=1, progress=False), SynthBirds("train", per_class=1, progress=False)
    split = split_model(model, "layer4")
    own = prepare_study(split, test, pool)
    with torch.no_grad():
        qf, pf = model.forward_features(test.images.float() / 255), model.forward_features(pool.images.float() / 255)
    given = prepare_study(split, test, pool, features=(qf, pf))
    assert torch.equal(given.q_feats, own.q_feats) and torch.equal(given.p_feats, own.p_feats)
    assert torch.equal(given.q_probs, own.q_probs) and given.plan(3).targets == own.plan(3).targets
    bad_nan = qf.clone()
    bad_nan[0, 0, 0, 0] = float("nan")
    for feats, match in (((qf[:-1], pf), "query features hold"), ((qf, pf[:, :8]), "differ in shape"),
                         ((bad_nan, pf), "NaN"), ((qf[0], pf), "query features")):
        with pytest.raises(xc.InputError, match=match):
            prepare_study(split, test, pool, features=feats)


def test_table4_kmeans_columns_computed_in_a_background_thread_equal_the_inline_ones() -> None:
    """`part_clustering_table` run in another thread (as the demo does, beside the searches) gives
    the K-means columns `aux_comparison` computes itself; columns for other K are refused."""
    from concurrent.futures import ThreadPoolExecutor

    from xcorr_core.data import SynthBirds

    from xcorr_scc_counterfactual import split_model
    from xcorr_scc_counterfactual.study import aux_comparison, part_clustering_table, prepare_study

    model = load_pretrained("birds")
    test, pool = SynthBirds("test", per_class=2, progress=False), SynthBirds("train", per_class=2, progress=False)
    data = prepare_study(split_model(model, "layer4"), test, pool, class_rule="mean_probability")
    auxes = {"classifier": load_auxiliary("classifier", model), "ssl": load_auxiliary("ssl")}
    inline = aux_comparison(data, auxes, ks=(4, 9))
    with ThreadPoolExecutor(max_workers=1) as bg:
        table = bg.submit(part_clustering_table, data, auxes, ks=(4, 9))
        background = aux_comparison(data, auxes, ks=(4, 9), kmeans=table.result())
    assert [r.model_dump() for r in background] == [r.model_dump() for r in inline]
    assert set(inline[0].kmeans) == {4, 9} and all(0 <= v <= 100 for r in inline for v in r.kmeans.values())
    with pytest.raises(xc.InputError, match="K = \\[4, 9, 16\\]"):
        aux_comparison(data, auxes, ks=(4, 9, 16), kmeans=table.result())
