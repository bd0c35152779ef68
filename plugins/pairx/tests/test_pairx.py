"""PAIR-X against independent references: zennit's own attributor, the sequential algorithm,
hand-computed metrics, known homographies."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xcorr_core as xc
from xcorr_core.data import SynthHerd, apply_homography
from xcorr_core.models import SmallResNet, load_pretrained
from xcorr_pairx import PairXExplanation, binned_bhattacharyya, default_composite, explain_pair, explain_pair_sequential
from xcorr_pairx.homography import homography_from_features, sift_features, sift_ransac_homography
from xcorr_pairx.lrp import captured_forward, cosine_seed
from xcorr_pairx.metrics import bhattacharyya_distance, inverted_residual_mean, match_coverage


@pytest.fixture(scope="module")
def herd():
    return SynthHerd("test", individuals=4, photos=3, progress=False)


@pytest.fixture(scope="module")
def model():
    return load_pretrained("herd")


def _hooks(m: nn.Module) -> int:
    return sum(len(x._forward_hooks) + len(x._forward_pre_hooks) + len(x._backward_hooks) for x in m.modules())


def test_cosine_seed_is_the_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True), torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
    ga, gb = torch.autograd.grad(cos, (a, b))
    c, sa, sb = cosine_seed(a.detach(), b.detach())
    torch.testing.assert_close((c, sa, sb), (cos.detach(), ga, gb))


def test_layer_relevance_chains_to_zennits_own_attribution(model, herd) -> None:
    """Relevance at layer3 propagated on to the input equals zennit's Gradient attributor from the output."""
    from zennit.attribution import Gradient

    x = torch.stack([herd.image(0), herd.image(1)])
    with torch.no_grad():
        e = model(x)
    _, sa, sb = cosine_seed(e[0], e[1])
    seed = torch.stack([sa, sb])
    with Gradient(model, default_composite(model)) as attributor:
        _, ref = attributor(x, seed)
    composite = default_composite(model)
    with captured_forward(model, "layer3", composite) as (m, store), torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        out = m(xx)
        rel = torch.autograd.grad(out, store["a"], grad_outputs=seed, retain_graph=True)[0]
        ours = torch.autograd.grad(store["a"], xx, grad_outputs=rel)[0]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    assert _hooks(model) == 0


def test_batched_pixel_maps_equal_the_sequential_algorithm(model, herd) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = explain_pair(model, herd.image(0), herd.image(1), n=6, chunk=4)
    slow = explain_pair_sequential(model, herd.image(0), herd.image(1), n=6)
    assert torch.equal(fast.matches, slow.matches) and torch.equal(fast.all_matches, slow.all_matches)
    # batch-2 vs batch-1 convolutions round differently: compare at float32 noise relative to the scale
    torch.testing.assert_close(fast.relevance_a, slow.relevance_a, rtol=1e-3, atol=1e-4 * float(slow.relevance_a.max()))
    scale = float(slow.pixel_maps_a.abs().max())
    torch.testing.assert_close(fast.pixel_maps_a, slow.pixel_maps_a, rtol=1e-3, atol=1e-4 * scale)
    torch.testing.assert_close(fast.pixel_maps_b, slow.pixel_maps_b, rtol=1e-3, atol=1e-4 * scale)
    assert fast.pixel_maps_a.shape == (6, 112, 112) and fast.similarity == pytest.approx(slow.similarity, abs=1e-5)
    # every top match is a mutual-NN match, scored by the product of the cells' relevances
    all_set = {tuple(p) for p in fast.all_matches.tolist()}
    assert all(tuple(p) in all_set for p in fast.matches.tolist())
    ra, rb = fast.relevance_a.flatten(), fast.relevance_b.flatten()
    torch.testing.assert_close(fast.match_scores, ra[fast.matches[:, 0]] * rb[fast.matches[:, 1]])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()) and _hooks(model) == 0 and not model.training


def test_no_hook_survives_an_exception_and_bad_input(model, herd) -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = SmallResNet(8, head="embedding").eval()

        def forward(self, x):
            self.net.layer3(self.net.layer2(self.net.layer1(self.net.relu(self.net.bn1(self.net.conv1(x))))))
            raise RuntimeError("user model bug")

    boom = Boom().eval()
    with pytest.raises(RuntimeError, match="user model bug"):
        explain_pair(boom, herd.image(0), herd.image(1), layer="net.layer3")
    assert _hooks(boom) == 0
    with pytest.raises(xc.LayerNotFoundError, match="layer9"):
        explain_pair(model, herd.image(0), herd.image(1), layer="layer9")
    with pytest.raises(xc.InputError, match="same shape"):
        explain_pair(model, herd.image(0), herd.image(1)[:, :64])
    train = SmallResNet(8, head="embedding").train()
    with pytest.raises(xc.InputError, match="eval mode"):
        explain_pair(train, herd.image(0), herd.image(1))
    assert train.training


def _exp(all_matches: torch.Tensor, grid=(4, 4), size=(32, 32), ra=None, rb=None) -> PairXExplanation:
    n = all_matches.shape[0]
    return PairXExplanation(method="pairx", similarity=0.5, layer="x", grid=grid, image_size=size, all_matches=all_matches,
                            matches=all_matches, match_scores=torch.ones(n),
                            relevance_a=ra if ra is not None else torch.ones(grid), relevance_b=rb if rb is not None else torch.ones(grid),
                            pixel_maps_a=torch.zeros(n, *size), pixel_maps_b=torch.zeros(n, *size),
                            keypoints_a=torch.zeros(n, 2), keypoints_b=torch.zeros(n, 2))


def test_inverted_residual_is_exact_on_matches_that_follow_a_homography() -> None:
    cells = torch.arange(16)
    exact = _exp(torch.stack([cells, cells], 1))
    assert inverted_residual_mean(exact, torch.eye(3, dtype=torch.float64)) == float("inf")
    # b shifted one cell (8 px) to the right of a for cells not in the last column: residual 8 px each
    keep = cells[cells % 4 != 3]
    shifted = _exp(torch.stack([keep, keep + 1], 1))
    H = torch.tensor([[1, 0, 8.0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    assert inverted_residual_mean(shifted, H) == float("inf")
    assert inverted_residual_mean(shifted, torch.eye(3, dtype=torch.float64)) == pytest.approx(1 / 8)


def test_match_coverage_by_hand() -> None:
    ra = torch.zeros(4, 4)
    ra[0, 0], ra[1, 1] = 3.0, 1.0
    rb = torch.ones(4, 4)
    e = _exp(torch.tensor([[0, 2], [5, 3], [0, 7]]), ra=ra, rb=rb)
    # matched cells: a {0, 5} -> 3 + 1 = 4 of 4; b {2, 3, 7} -> 3 of 16
    assert match_coverage(e) == pytest.approx((4 + 3) / (4 + 16))


def test_bhattacharyya_known_answers() -> None:
    p = np.array([0.2, 0.3, 0.5])
    assert bhattacharyya_distance(p, p) == pytest.approx(0.0, abs=1e-12)
    assert bhattacharyya_distance([1, 0], [0, 1]) == float("inf")
    rng = np.random.default_rng(0)
    sims = rng.random(2000)
    correct = rng.random(2000) < 0.5
    same = rng.normal(0, 1, 2000)
    d_same, _ = binned_bhattacharyya(same, sims, correct)
    far = np.where(correct, rng.normal(5, 1, 2000), rng.normal(0, 1, 2000))
    d_far, bins = binned_bhattacharyya(far, sims, correct)
    d_swapped, _ = binned_bhattacharyya(far, sims, ~correct)
    assert abs(d_same) < 0.05 and d_far > 2.0 and len(bins) == 10
    assert d_swapped == pytest.approx(-d_far)
    with pytest.raises(xc.InputError, match="both"):
        binned_bhattacharyya(same, sims, np.ones(2000, bool))


def test_sift_ransac_recovers_the_true_homography(herd) -> None:
    for i, j in ((0, 1), (3, 5)):
        H = sift_ransac_homography(herd.image(i), herd.image(j))
        assert H is not None
        ys, xs = torch.nonzero(herd.visible[i], as_tuple=True)
        p = torch.stack([xs, ys], 1).double() + 0.5
        err = (apply_homography(H, p) - apply_homography(herd.true_homography(i, j), p)).norm(dim=1)
        assert float(err.median()) < 0.5
        # features computed once per image give the same homography
        assert torch.equal(homography_from_features(sift_features(herd.image(i)), sift_features(herd.image(j))), H)


def test_study_pairs_reuse_sift_features_with_identical_results(model, herd) -> None:
    from xcorr_pairx.study import evaluate_pairs

    pairs = [(0, 1, 1, 0.9, True), (0, 2, 2, 0.8, True), (1, 2, 1, 0.7, True), (0, 5, 3, 0.5, False)]
    cached = evaluate_pairs(model, herd.image, pairs, n=5, progress=False)
    fresh = evaluate_pairs(model, herd.image, pairs, n=5, progress=False,
                           homography_fn=lambda a, b: sift_ransac_homography(a, b, min_inliers=4))
    assert [r.residual_score for r in cached] == [r.residual_score for r in fresh]
    assert any(r.residual_score != 0.0 for r in cached)


def test_batched_pairs_equal_one_pair_at_a_time(model, herd) -> None:
    """explain_pairs: the same similarity, matches and order as explain_pair per pair, relevance to float
    summation order (batch 1 is the same computation, bit for bit); the study's records agree likewise."""
    from xcorr_pairx import explain_pairs
    from xcorr_pairx.study import evaluate_pairs

    pairs = [(0, 1), (0, 2), (3, 4), (0, 5), (6, 9), (7, 11), (10, 2)]
    a = torch.stack([herd.image(i) for i, _ in pairs])
    b = torch.stack([herd.image(j) for _, j in pairs])
    one = [explain_pair(model, herd.image(i), herd.image(j), n=8, pixel_maps=False) for i, j in pairs]
    for batch in (1, 3, 7):
        many = explain_pairs(model, a, b, n=8, batch=batch)
        assert len(many) == len(pairs)
        for e, r in zip(many, one):
            assert e.similarity == pytest.approx(r.similarity, abs=1e-6)
            assert torch.equal(e.all_matches, r.all_matches) and torch.equal(e.matches, r.matches)
            for x, y in ((e.relevance_a, r.relevance_a), (e.relevance_b, r.relevance_b)):
                if batch == 1:
                    assert torch.equal(x, y)
                else:
                    torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4 * float(y.abs().max()))  # measured <= 7e-5 of the max
            assert e.pixel_maps_a.shape == (0, *a.shape[2:]) and _hooks(model) == 0
    study = [(i, j, 0, 0.5, bool(herd.labels[i] == herd.labels[j])) for i, j in pairs]
    grouped = evaluate_pairs(model, herd.image, study, n=8, progress=False, batch=3)
    single = evaluate_pairs(model, herd.image, study, n=8, progress=False, batch=1)
    assert [r.residual_score for r in grouped] == [r.residual_score for r in single]
    assert [r.coverage for r in grouped] == pytest.approx([r.coverage for r in single], rel=1e-4)
    with pytest.raises(xc.InputError):
        explain_pairs(model, a, b[:, :, :-1])
    with pytest.raises(xc.InputError, match="batch"):
        explain_pairs(model, a, b, batch=0)


def test_registered_components(model, herd) -> None:
    xc.reload_plugins()
    names = {(c.kind, c.name) for c in xc.components() if c.plugin == "pairx"}
    assert ("explainer", "pairx") in names and ("statistic", "pairx_separability") in names
    ex = xc.create("explainer", "pairx", n=5)
    e = ex.explain_pair(model, herd.image(0), herd.image(1))
    assert e.matches.shape == (5, 2) and e.keypoints_a.shape == (5, 2)
    cov = xc.create("metric", "pairx_coverage").compute(explanations=[e])
    assert cov.value == pytest.approx(match_coverage(e))
    back = PairXExplanation.from_json(e.to_json())
    assert torch.equal(back.pixel_maps_a, e.pixel_maps_a)
    # a pipeline hands pairx a pair (Case.pair_image) and its model, so a spec naming it builds (tests/test_spec_metrics.py runs one)
    assert xc.Pipeline({"explainers": [{"name": "pairx"}]}, model=load_pretrained("herd")).spec.explainers[0].name == "pairx"


@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_cached_engine_equals_zennit_on_torchvision_models(arch) -> None:
    """The cached engine gives zennit's EpsilonPlus attribution (incl. the ZPlus negative branch on a
    normalised input, and a batch of relevances at once); both engines leave no hook behind."""
    import torchvision
    from zennit.attribution import Gradient

    from xcorr_pairx.lrp import cached_lrp

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=16).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=g)  # negative inputs: ZPlus's x- branch is live in the first layer
    seed = torch.randn(2, 16, generator=g)
    with Gradient(model, default_composite(model)) as attributor:
        _, ref = attributor(x, seed)
    with cached_lrp(model, default_composite(model)) as m, torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        out = m(xx)
        ours = torch.autograd.grad(out, xx, grad_outputs=seed, retain_graph=True)[0]
        batched = torch.autograd.grad(out, xx, grad_outputs=torch.stack([seed, -3 * seed]), is_grads_batched=True)[0]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(batched[1], -3 * ref, rtol=1e-4, atol=1e-5)
    assert float((ours - ref).abs().max()) <= 1e-5 * float(ref.abs().max())  # the bar: equal to 1e-5
    assert _hooks(model) == 0


@pytest.mark.parametrize("which", ["gamma_box", "alpha_beta", "zplus_subclass"])
def test_cached_engine_equals_zennit_for_other_composites(which) -> None:
    """Rules outside the scale-once fast path (ZBox, AlphaBeta, a ZPlus subclass) and Gamma's
    zero-coefficient branch give zennit's attribution too, mixed with fast-path rules in one model."""
    import torchvision
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, SpecialFirstLayerMapComposite, layer_map_base
    from zennit.rules import Epsilon, ZPlus
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Convolution, Linear

    from xcorr_pairx.lrp import cached_lrp

    class MyZPlus(ZPlus):  # a subclass may change the mapper or reducer: the generic path
        pass

    def make():
        if which == "gamma_box":
            return EpsilonGammaBox(low=-3.0, high=3.0, canonizers=[ResNetCanonizer()])
        if which == "alpha_beta":
            return EpsilonAlpha2Beta1(canonizers=[ResNetCanonizer()])
        return SpecialFirstLayerMapComposite(layer_map_base() + [(Convolution, MyZPlus()), (Linear, Epsilon())],
                                             [(Convolution, ZPlus())], canonizers=[ResNetCanonizer()])

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=8).eval()
    g = torch.Generator().manual_seed(1)
    x, seed = torch.randn(2, 3, 48, 48, generator=g), torch.randn(2, 8, generator=g)
    with Gradient(model, make()) as attributor:
        _, ref = attributor(x, seed)
    with cached_lrp(model, make()) as m, torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        out = m(xx)
        ours = torch.autograd.grad(out, xx, grad_outputs=seed, retain_graph=True)[0]
        batched = torch.autograd.grad(out, xx, grad_outputs=torch.stack([2 * seed, seed]), is_grads_batched=True)[0]
    scale = float(ref.abs().max())
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(batched[1], ref, rtol=1e-4, atol=1e-5 * scale)
    assert _hooks(model) == 0


def test_cached_engine_scales_once_per_forward() -> None:
    """EpsilonPlus's rules keep their stabilised denominators: zennit's gradient mapper runs once per
    layer call (when the first backward builds it), not once per backward."""
    import torchvision

    from xcorr_pairx.lrp import cached_lrp

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=8).eval()
    composite = default_composite(model)
    calls = {"n": 0}
    x = torch.randn(1, 3, 32, 32)
    with cached_lrp(model, composite) as m, torch.enable_grad():
        for _, rule in [(mod, composite.module_map({}, name, mod)) for name, mod in m.named_modules()]:
            if rule is not None and hasattr(rule, "gradient_mapper") and not hasattr(rule, "_counted"):
                inner = rule.gradient_mapper

                def counted(grad, outputs, inner=inner):
                    calls["n"] += 1
                    return inner(grad, outputs)
                rule.gradient_mapper, rule._counted = counted, True
        xx = x.clone().requires_grad_(True)
        out = m(xx)
        for k in range(3):
            torch.autograd.grad(out, xx, grad_outputs=torch.randn(1, 8), retain_graph=True)
            if k == 0:
                first = calls["n"]
    assert first > 0 and calls["n"] == first


def test_engines_agree_and_unsupported_rules_fall_back(model, herd) -> None:
    from zennit.composites import LayerMapComposite
    from zennit.rules import ReLUGuidedBackprop
    from zennit.types import Activation

    from xcorr_pairx.lrp import supports_cached

    a, b = herd.image(0), herd.image(1)
    fast = explain_pair(model, a, b, n=4)
    slow = explain_pair(model, a, b, n=4, engine="zennit")
    assert fast.meta["lrp_engine"] == "cached" and slow.meta["lrp_engine"] == "zennit"
    torch.testing.assert_close(fast.pixel_maps_a, slow.pixel_maps_a, rtol=1e-4, atol=1e-7)
    for f, z in ((fast.pixel_maps_a, slow.pixel_maps_a), (fast.pixel_maps_b, slow.pixel_maps_b)):
        assert float((f - z).abs().max()) <= 1e-5 * float(z.abs().max())
    torch.testing.assert_close(fast.relevance_b, slow.relevance_b, rtol=1e-4, atol=1e-7)
    guided = LayerMapComposite([(Activation, ReLUGuidedBackprop())])
    assert not supports_cached(model, guided)
    e = explain_pair(model, a, b, n=2, composite=guided)
    assert e.meta["lrp_engine"] == "zennit"
    with pytest.raises(xc.InputError, match="engine"):
        explain_pair(model, a, b, n=2, engine="fast")
    assert _hooks(model) == 0


def _tiny_efficientnet(fused: bool = False) -> nn.Module:
    """A small torchvision EfficientNet (random weights): MBConv blocks with squeeze-excitation and skips."""
    from functools import partial

    import torchvision
    from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig

    conf = partial(MBConvConfig, width_mult=1.0, depth_mult=1.0)
    settings = [conf(1, 3, 1, 16, 16, 1), conf(4, 3, 2, 16, 24, 2), conf(4, 5, 1, 24, 24, 2)]
    if fused:
        settings = [FusedMBConvConfig(1, 3, 1, 16, 16, 2), *settings[1:]]
    torch.manual_seed(0)
    model = EfficientNet(settings, dropout=0.0, num_classes=12, last_channel=64 if fused else None).eval()
    assert isinstance(model, torchvision.models.EfficientNet)
    return model


def test_efficientnet_canonizer_is_chosen_and_equals_zennits_attributor(recwarn) -> None:
    from zennit.attribution import Gradient

    from xcorr_pairx import EfficientNetCanonizer
    from xcorr_pairx.lrp import cached_lrp

    model = _tiny_efficientnet()
    composite = default_composite(model)
    assert [type(c) for c in composite.canonizers] == [EfficientNetCanonizer] and not recwarn.list
    g = torch.Generator().manual_seed(1)
    x, seed = torch.randn(2, 3, 48, 48, generator=g), torch.randn(2, 12, generator=g)
    with torch.no_grad():
        plain = model(x)
    with Gradient(model, default_composite(model)) as attributor:
        out, ref = attributor(x, seed)
    torch.testing.assert_close(out, plain)  # canonizing changes the relevance, never the forward
    with cached_lrp(model, default_composite(model)) as m, torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        ours = torch.autograd.grad(m(xx), xx, grad_outputs=seed)[0]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    # the canonizer matters: the generic BatchNorm merge gives another attribution (and a warning)
    with pytest.warns(UserWarning, match="no canonizer"):
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlus

        default_composite(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval())
    with Gradient(model, EpsilonPlus(canonizers=[SequentialMergeBatchNorm()])) as attributor:
        _, generic = attributor(x, seed)
    assert not torch.allclose(generic, ref, rtol=1e-2, atol=1e-4)
    assert _hooks(model) == 0 and all(not hasattr(mod, "canonizer_sum") for mod in model.modules())


def test_signal_gate_and_residual_sum_by_hand() -> None:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlus
    from torchvision.ops.misc import SqueezeExcitation

    from xcorr_pairx import EfficientNetCanonizer, SignalGate

    gate, x = torch.tensor([0.25, 4.0], requires_grad=True), torch.tensor([2.0, -1.0], requires_grad=True)
    out = SignalGate.apply(gate, x)
    gg, gx = torch.autograd.grad(out, (gate, x), grad_outputs=torch.tensor([1.0, 3.0]), allow_unused=True)
    assert torch.equal(out.detach(), torch.tensor([0.5, -4.0])) and torch.equal(gg, torch.zeros(2)) and torch.equal(gx, torch.tensor([1.0, 3.0]))
    # an SE block alone: the relevance reaching its output passes to its input untouched
    se = SqueezeExcitation(4, 2).eval()
    xi = torch.rand(1, 4, 3, 3)
    seed = torch.rand(1, 4, 3, 3)
    with Gradient(se, EpsilonPlus(canonizers=[EfficientNetCanonizer()])) as attributor:
        out, rel = attributor(xi, seed)
    torch.testing.assert_close(out, se(xi))
    torch.testing.assert_close(rel, seed)  # all of it to the signal, none through the gate's branch


def test_pairx_on_an_efficientnet_engines_agree_and_options() -> None:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlus

    from xcorr_pairx import EfficientNetCanonizer

    model = _tiny_efficientnet(fused=True)
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 48, 48, generator=g), torch.rand(3, 48, 48, generator=g)
    fast = explain_pair(model, a, b, layer="features.2", n=4)
    ref = explain_pair(model, a, b, layer="features.2", n=4, engine="zennit")
    assert torch.equal(fast.matches, ref.matches)
    scale = float(ref.pixel_maps_a.abs().max())
    torch.testing.assert_close(fast.pixel_maps_a, ref.pixel_maps_a, rtol=1e-4, atol=1e-5 * scale)
    # residual_all also sums FusedMBConv's skip; merge_batchnorm folds BatchNorm: both change the relevance only
    x, seed = torch.stack([a, b]), torch.randn(2, 12, generator=g)
    outs = []
    for canon in (EfficientNetCanonizer(), EfficientNetCanonizer(residual_all=True), EfficientNetCanonizer(residual_all=True, merge_batchnorm=True)):
        with Gradient(model, EpsilonPlus(canonizers=[canon])) as attributor:
            out, rel = attributor(x, seed)
        outs.append((out, rel))
    for out, _ in outs[1:]:
        torch.testing.assert_close(out, outs[0][0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(outs[0][1], outs[1][1]) and not torch.allclose(outs[1][1], outs[2][1])


def test_timm_blocks_are_recognised_without_timm() -> None:
    from xcorr_pairx import EfficientNetCanonizer, is_efficientnet

    class SqueezeExcite(nn.Module):  # timm's layout, defined here: timm is not installed
        def __init__(self) -> None:
            super().__init__()
            self.conv_reduce, self.act1, self.bn = nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Identity()
            self.conv_expand, self.gate = nn.Conv2d(2, 4, 1), nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = self.conv_expand(self.act1(self.bn(self.conv_reduce(x.mean((2, 3), keepdim=True)))))
            return x * self.gate(s)

    SqueezeExcite.__module__ = "timm.models._efficientnet_blocks"
    se = SqueezeExcite().eval()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), se).eval()
    assert is_efficientnet(model)
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlus

    x = torch.rand(1, 3, 6, 6)
    with Gradient(se, EpsilonPlus(canonizers=[EfficientNetCanonizer()])) as attributor:
        out, rel = attributor(x[:, :1].expand(1, 4, 6, 6).contiguous(), torch.ones(1, 4, 6, 6))
    torch.testing.assert_close(rel, torch.ones(1, 4, 6, 6))  # the gate passes relevance to the signal only
    assert not is_efficientnet(nn.Sequential(nn.Conv2d(3, 4, 3)))
