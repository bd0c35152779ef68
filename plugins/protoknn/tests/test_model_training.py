"""The model, training (frozen prototypes, seeding, resume), projection, kNN and explanations."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_core.errors import InputError
from xcorr_core.models import SmallResNet
from xcorr_protoknn import (ProtoKNNClassifier, ProtoKNNNet, TrainConfig, contributions, encode, explain_profile, project_prototypes,
                            prototype_variance, spread_prototypes, train, vote)
from xcorr_protoknn.prototypes import max_cosine


def small_cfg(**kw):
    return TrainConfig(steps=3, classes_per_batch=4, per_class=2, checkpoint_every=2, **kw)


def test_spread_prototypes_are_unit_and_spread():
    p = spread_prototypes(16, 4, steps=300, seed=0)
    assert torch.allclose(p.norm(dim=1), torch.ones(16), atol=1e-5)
    rnd = torch.nn.functional.normalize(torch.randn(16, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    assert float(max_cosine(p).mean()) < float(max_cosine(rnd).mean())
    assert torch.equal(p, spread_prototypes(16, 4, steps=300, seed=0))
    assert prototype_variance(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-6)


def test_profiles_are_max_patch_cosines(tiny, tiny_data):
    images, _ = tiny_data
    with torch.no_grad():
        out = tiny.outputs(images[:3])
        z = torch.nn.functional.normalize(tiny.patches(tiny.feature_map(images[:3])).flatten(2), dim=1)
    want = torch.einsum("bdp,md->bmp", z, tiny.prototypes).amax(-1)
    assert torch.allclose(out.profiles, want, atol=1e-6) and torch.allclose(tiny.profiles(images[:3]), want, atol=1e-6)
    assert out.profiles.shape == (3, 12) and bool((out.profiles.abs() <= 1 + 1e-6).all())
    assert torch.allclose(out.aux.norm(dim=1), torch.ones(3))


def test_training_keeps_prototypes_frozen_and_is_seeded(tiny, tiny_data, tmp_path):
    images, labels = tiny_data
    before = tiny.prototypes.clone()
    start = {k: v.clone() for k, v in tiny.state_dict().items()}
    res = train(tiny, images, labels, small_cfg())
    assert torch.equal(tiny.prototypes, before)  # only projection moves prototypes
    assert "prototypes" not in [n for n, _ in tiny.named_parameters()]
    assert not torch.equal(tiny.addon.weight, start["addon.weight"])
    assert len(res["history"]) == 3 and all(torch.isfinite(torch.tensor(h["total"])) for h in res["history"])
    # same seed, same weights; and a run resumed from its checkpoint ends where an uninterrupted one does
    tiny.load_state_dict(start)
    train(tiny, images, labels, small_cfg())
    again = {k: v.clone() for k, v in tiny.state_dict().items()}
    tiny.load_state_dict(start)
    train(tiny, images, labels, TrainConfig(steps=2, classes_per_batch=4, per_class=2, checkpoint_every=2), checkpoint=tmp_path / "c.pt")
    train(tiny, images, labels, small_cfg(), checkpoint=tmp_path / "c.pt")
    for k, v in tiny.state_dict().items():
        assert torch.allclose(v.float(), again[k].float(), atol=1e-6), k
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(xc.IndexFileError):
        train(tiny, images, labels, small_cfg(), checkpoint=tmp_path / "bad.pt")


def test_bad_inputs(tiny, tiny_data):
    images, labels = tiny_data
    with pytest.raises(InputError, match="two classes"):
        train(tiny, images[:4], labels[:4], TrainConfig(steps=1, classes_per_batch=2, per_class=2))
    with pytest.raises(InputError, match="spatial map"):
        ProtoKNNNet(SmallResNet(4, widths=(8, 8, 16, 16)), "avgpool", 16, dim=8, prototypes=4, prototype_steps=5).profiles(images[:2])
    gallery = ProtoKNNClassifier(torch.rand(5, 3), torch.tensor([0, 1, 0, 1, 2]))
    with pytest.raises(InputError, match="k=6"):
        gallery.predict(torch.rand(2, 3), k=6)
    with pytest.raises(InputError, match="prototypes"):
        gallery.predict(torch.rand(2, 4), k=1)


def test_projection_puts_every_prototype_on_a_training_patch(tiny, tiny_data):
    images, _ = tiny_data
    proj = project_prototypes(tiny, images)
    with torch.no_grad():
        z = torch.nn.functional.normalize(tiny.patches(tiny.feature_map(images)).flatten(2), dim=1)  # [N, D, P]
    patches = z[proj.source_ids, :, proj.source_cells]  # [M, D]
    assert torch.allclose(tiny.prototypes, patches, atol=1e-6)
    key = proj.source_ids * 4 + proj.source_cells
    assert proj.duplicates == 12 - key.unique().numel() and proj.grid == (2, 2)
    # each prototype is now exactly some training patch: its best cosine over the training patches is 1
    cos = torch.einsum("ndp,md->mnp", z, tiny.prototypes).flatten(1).amax(1)
    assert torch.allclose(cos, torch.ones(12), atol=1e-5)


def test_knn_vote_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    gal, lab = torch.rand(30, 6, generator=g), torch.randint(0, 4, (30,), generator=g)
    q = torch.rand(7, 6, generator=g)
    clf = ProtoKNNClassifier(gal, lab)
    for k in (1, 3, 5, 10):
        pred = clf.predict(q, k).predictions
        for i in range(7):
            d = ((gal - q[i]) ** 2).sum(1)
            nn = d.argsort()[:k]
            counts = torch.bincount(lab[nn], minlength=4)
            best = [c for c in range(4) if counts[c] == counts.max()]
            sums = {c: float(d[nn][lab[nn] == c].sum()) for c in best}
            want = min(best, key=lambda c: (sums[c], c))
            assert int(pred[i]) == want
    # ties: equal votes and sums go to the lowest class id
    p, v = vote(torch.tensor([[2, 1]]), torch.tensor([[1.0, 1.0]]), 3)
    assert p.tolist() == [1] and v.tolist() == [1]


@given(st.integers(0, 10_000), st.integers(1, 40))
def test_contributions_sum_to_the_distance_difference(seed, m):
    g = torch.Generator().manual_seed(seed)
    a, p, n = (torch.rand(m, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(3))
    delta = contributions(a, p, n)
    assert float(delta.sum()) == pytest.approx(float(((a - n) ** 2).sum() - ((a - p) ** 2).sum()), abs=1e-12)


def test_explanation_fields_and_figure(tiny, tiny_data):
    images, labels = tiny_data
    proj = project_prototypes(tiny, images)
    profiles, cells, grid = encode(tiny, images)
    clf = ProtoKNNClassifier(profiles, labels)
    q = images[0]
    qp, qc, _ = encode(tiny, q[None])
    pred = int(clf.predict(qp, 1).predictions[0])
    exp = explain_profile(qp[0], qc[0], clf, cells, proj, pred, top=3, query_id=0)
    assert int(labels[exp.positive_id]) == pred and exp.contrast_class != pred and int(labels[exp.negative_id]) == exp.contrast_class
    d_ap = float(((qp[0] - profiles[exp.positive_id]) ** 2).sum())
    d_an = float(((qp[0] - profiles[exp.negative_id]) ** 2).sum())
    assert exp.difference == pytest.approx(d_an - d_ap, abs=1e-5)
    assert exp.top.numel() == 3 and torch.equal(exp.top, exp.contributions.topk(3).indices)
    assert torch.equal(exp.positive_cells, cells[exp.positive_id][exp.top])
    other = explain_profile(qp[0], qc[0], clf, cells, proj, pred, contrast=(pred + 1) % 4)
    assert other.contrast_class == (pred + 1) % 4
    with pytest.raises(InputError):
        explain_profile(qp[0], qc[0], clf, cells, proj, pred, contrast=pred)
    fig = exp.plot(images=lambda i: images[i], query=q)
    assert len(fig.axes) == 12
    assert xc.Explanation.model_validate_json(exp.to_json()).method == "protoknn"


def test_pipeline_runs_knn_over_profiles(tiny, tiny_data):
    images, labels = tiny_data
    data = torch.utils.data.TensorDataset(images, labels)
    pipe = xc.Pipeline({"features": {"pooled_layer": "profile", "spatial_layer": None}, "index": {"metric": "l2"},
                        "decision": {"k": 1}, "explainers": []}, model=tiny.eval())
    pipe.fit(data, labels=labels, progress=False)
    res = pipe.run(data, targets=labels, name="d", progress=False)
    clf = ProtoKNNClassifier(encode(tiny, images)[0], labels)
    assert torch.equal(res.methods["knn"].predictions, clf.predict(encode(tiny, images)[0], 1).predictions)


def _vote_by_class_table(labels: torch.Tensor, distances: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The former [Q, num_classes] vote, as the reference for small class ids."""
    q = labels.shape[0]
    counts = torch.zeros(q, num_classes, dtype=torch.int64).scatter_add_(1, labels, torch.ones_like(labels))
    sums = torch.zeros(q, num_classes, dtype=distances.dtype).scatter_add_(1, labels, distances)
    tied = counts == counts.amax(1, keepdim=True)
    pred = torch.where(tied, sums, torch.full_like(sums, float("inf"))).argmin(1)
    return pred, counts.gather(1, pred[:, None]).squeeze(1)


@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 12), st.integers(1, 5))
def test_vote_equals_the_class_table_vote(seed, q, k, classes):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (q, k), generator=g)
    distances = torch.randint(0, 4, (q, k), generator=g).double()  # small integers: many exact ties
    p, v = vote(labels, distances)
    rp, rv = _vote_by_class_table(labels, distances, classes)
    assert p.tolist() == rp.tolist() and v.tolist() == rv.tolist()


def test_a_huge_class_id_costs_no_memory() -> None:
    """A label of 10^9 once allocated [Q, 10^9 + 1] counts (18 GB, killed); now it is one more id."""
    profiles = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    clf = ProtoKNNClassifier(profiles, torch.tensor([10**9, 10**9, 3, 3]))
    pred = clf.predict(torch.tensor([[0.05, 0.0], [5.05, 5.0]]), k=2)
    assert pred.predictions.tolist() == [10**9, 3] and pred.votes.tolist() == [2, 2]


def test_a_one_class_gallery_says_so_instead_of_naming_a_contrast_class() -> None:
    clf = ProtoKNNClassifier(torch.rand(3, 4), torch.tensor([2, 2, 2]))
    with pytest.raises(InputError, match="every gallery image is of the predicted class 2"):
        explain_profile(torch.rand(4), None, clf, None, None, 2)


def test_profiles_refuse_images_outside_the_shipped_backbones_range() -> None:
    torch.manual_seed(0)
    net = ProtoKNNNet(SmallResNet(24).eval(), "layer4", 256, dim=8, prototypes=4, prototype_steps=5).eval()
    x = torch.rand(2, 3, 112, 112)
    assert net.profiles(x).shape == (2, 4)
    with pytest.raises(InputError, match="divide by 255"):
        net.profiles(x * 255)
    with pytest.raises(InputError, match="1 channel"):
        net.profiles(x[:, :1])
