"""Hand-computed small cases and hypothesis properties of every statistic."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcorr_core.errors import InputError
from xcorr_human_team_sim import AIPredictions, TrialRow, TrialTable, pairwise_tests, summarize_arms
from xcorr_human_team_sim.model2 import HumanTrials, authors_threshold, bootstrap_team, complementarity, cv_threshold, team_curve
from xcorr_human_team_sim.stats import adjust_pvalues, mann_whitney
from xcorr_human_team_sim.simulate import ArmAssumption, assumptions_from_study, power


def _table() -> TrialTable:
    rows = []
    # arm A: user a1 3/4 right, a2 2/4; arm B: b1 1/4, b2 4/4
    spec = {("A", "a1"): [1, 1, 1, 0], ("A", "a2"): [1, 0, 1, 0], ("B", "b1"): [0, 0, 1, 0], ("B", "b2"): [1, 1, 1, 1]}
    ai = [1, 0, 1, 0]
    conf = [0.9, 0.8, 0.3, 0.2]
    for (arm, user), ans in spec.items():
        for i, (k, c, s) in enumerate(zip(ans, ai, conf)):
            rows.append(TrialRow(user=user, query=f"q{i}", arm=arm, ai_correct=bool(c), confidence=s, user_correct=bool(k)))
    return TrialTable(rows)


def test_model1_by_hand() -> None:
    s = {a.arm: a for a in summarize_arms(_table())}
    assert s["A"].accuracy_mean == pytest.approx(0.625) and s["A"].accuracy_sd == pytest.approx(np.std([0.75, 0.5], ddof=1))
    # arm A: AI-right trials (q0, q2): a1 1,1 a2 1,1 -> 1.0; AI-wrong (q1, q3): a1 1,0 a2 0,0 -> 0.25
    assert s["A"].accuracy_when_ai_right == 1.0 and s["A"].accuracy_when_ai_wrong == 0.25
    # rejections = answer != AI correctness: a1 q1 (ai wrong, user right) ... count by hand: a1 {q1}, a2 {} -> 1/8
    assert s["A"].reject_rate == pytest.approx(1 / 8)
    t = _table()
    assert t.filter_users(0.5).users == ["a1", "b2"]
    assert t.filter_users(0.5, strict=False).users == ["a1", "a2", "b2"]
    assert t.filter_users(None, exclude=["b2"]).users == ["a1", "a2", "b1"]
    with pytest.raises(InputError, match="unknown user"):
        t.filter_users(None, exclude=["zz"])


def test_mann_whitney_exact_by_enumeration() -> None:
    x, y = np.array([0.9, 0.7, 0.8]), np.array([0.1, 0.75, 0.3, 0.2])
    u, p, used = mann_whitney(x, y, "exact")
    assert used == "exact" and mann_whitney(x, y) == (u, p, "exact")  # auto: no ties, small -> exact
    assert u == 11  # pairs (xi > yj): 0.9 beats 4, 0.7 beats 3, 0.8 beats 4
    pooled = np.concatenate([x, y])
    us = []
    for idx in itertools.combinations(range(7), 3):
        a = pooled[list(idx)]
        b = np.delete(pooled, list(idx))
        us.append(sum(ai > bj for ai in a for bj in b))
    us = np.array(us)
    p_ref = min(1.0, 2 * min((us >= 11).mean(), (us <= 11).mean()))
    assert p == pytest.approx(p_ref)
    assert mann_whitney(x, y, "permutation")[1] == pytest.approx(p_ref)  # small: exact enumeration
    with pytest.raises(InputError):
        mann_whitney(x, np.array([]))


def test_pvalue_corrections_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02])
    # Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    with pytest.raises(InputError):
        adjust_pvalues([1.5], "holm")


def test_pairwise_family() -> None:
    tests = pairwise_tests(_table(), correction="bonferroni")
    assert len(tests) == 1 and tests[0].arm_a == "A" and tests[0].mean_difference == pytest.approx(0.625 - 0.625)


def test_team_by_hand() -> None:
    ai = AIPredictions(method="m", correct=np.array([1, 1, 0, 1, 0], bool), confidence=np.array([0.9, 0.7, 0.6, 0.4, 0.2]))
    hum = HumanTrials(arm="A", correct=np.array([1, 0, 1, 1], bool), confidence=np.array([0.3, 0.5, 0.8, 0.1]), user=np.array([0, 0, 1, 1]))
    pts = {p.threshold: p for p in team_curve(ai, hum, np.array([0.0, 0.5, 0.65, 1.0]))}
    assert pts[0.0].team_accuracy == pytest.approx(3 / 5) and pts[0.0].coverage == 1.0
    # T = 0.5: auto = {0.9, 0.7, 0.6} -> 2 right; deferred 2 items x human acc on conf < 0.5 trials {0.3:1, 0.1:1} = 1.0
    assert pts[0.5].team_accuracy == pytest.approx((2 + 2 * 1.0) / 5)
    # T = 0.65: auto {0.9, 0.7} both right; deferred 3 x acc of {0.3, 0.5, 0.1} = 2/3
    assert pts[0.65].team_accuracy == pytest.approx((2 + 3 * 2 / 3) / 5)
    # T = 1: all deferred; humans below 1.0 = all 4 trials, 3/4 right
    assert pts[1.0].team_accuracy == pytest.approx(0.75) and pts[1.0].coverage == 0.0


@st.composite
def studies(draw):
    n = draw(st.integers(5, 60))
    t = draw(st.integers(4, 60))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    ai = AIPredictions(method="m", correct=rng.random(n) < 0.8, confidence=np.round(rng.random(n), 2))
    hum = HumanTrials(arm="A", correct=rng.random(t) < 0.65, confidence=np.round(rng.random(t), 2), user=rng.integers(0, 5, t))
    hum.user = np.unique(hum.user, return_inverse=True)[1]
    return ai, hum


@given(studies())
def test_team_properties(study) -> None:
    ai, hum = study
    th = np.round(np.arange(0, 1.0001, 0.05), 10)
    curve = team_curve(ai, hum, np.append(th, 1.5))
    assert curve[0].team_accuracy == pytest.approx(ai.accuracy)  # T = 0: AI alone
    assert curve[-1].team_accuracy == pytest.approx(hum.accuracy)  # T above every confidence: humans alone
    cov = [p.coverage for p in curve]
    assert all(a >= b for a, b in zip(cov, cov[1:]))  # coverage never grows with T
    for p in curve:  # consistency with coverage: a mixture of the two parts
        if p.team_accuracy == p.team_accuracy and 0 < p.coverage < 1:
            mix = p.coverage * p.ai_accuracy_auto + (1 - p.coverage) * p.human_accuracy_rest
            assert p.team_accuracy == pytest.approx(mix)


def test_threshold_choices_and_bootstrap() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    conf = rng.random(n)
    ai = AIPredictions(method="m", correct=rng.random(n) < conf, confidence=conf)  # calibrated AI
    hconf = rng.random(3000)
    hum = HumanTrials(arm="A", correct=rng.random(3000) < 0.7, confidence=hconf, user=np.arange(3000) % 100)
    kw = dict(seed=42, n_pick=1000, n_report=4000)
    a1, a2 = authors_threshold(ai, hum, criterion="team_accuracy", **kw), authors_threshold(ai, hum, criterion="team_accuracy", **kw)
    assert a1 == a2 and 0.6 <= a1.threshold <= 0.8  # humans at 0.7 should take inputs the AI gets right < 70 %
    # the authors' criterion separates right from wrong AI answers: about 0.5 for a calibrated AI
    assert 0.4 <= authors_threshold(ai, hum, **kw).threshold <= 0.6
    cv = cv_threshold(ai, hum, folds=5)
    assert 0.6 <= cv.threshold <= 0.8 and len(cv.details["fold_thresholds"]) == 5
    boot = bootstrap_team(ai, hum, np.array([cv.threshold]), n_boot=500)
    lo, hi = np.percentile(boot["team"][:, 0], [2.5, 97.5])
    assert lo < cv.full_set_accuracy < hi
    comp = complementarity(ai, hum, cv.threshold, n_boot=500)
    assert comp.complementary and comp.ci[0] > 0 and comp.p_value < 0.01
    weak = HumanTrials(arm="B", correct=rng.random(3000) < 0.3, confidence=hconf, user=np.arange(3000) % 100)
    assert not complementarity(ai, weak, 0.0, n_boot=300).complementary  # T = 0 is the AI alone: no margin
    with pytest.raises(InputError):
        authors_threshold(ai, hum, n_pick=4000, n_report=4000)


def test_power_calibration() -> None:
    same = ArmAssumption(name="x", accept_if_ai_right=0.9, accept_if_ai_wrong=0.6, user_sd=0.3)
    r = power(same, same.model_copy(update={"name": "y"}), users=40, sims=1000, seed=1)
    assert r.power_ci[0] <= 0.05 <= r.power_ci[1] or r.power < 0.08  # no difference: rejections at about alpha
    big = ArmAssumption(name="z", accept_if_ai_right=0.9, accept_if_ai_wrong=0.1)
    assert power(big, same, users=20, sims=300).power > 0.99
    small = [power(big.model_copy(update={"accept_if_ai_wrong": 0.5}), same, users=n, sims=400, seed=n).power for n in (10, 40, 160)]
    assert small[0] < small[1] < small[2]


def test_assumptions_are_recovered_from_a_simulated_study() -> None:
    truth = ArmAssumption(name="A", accept_if_ai_right=0.85, accept_if_ai_wrong=0.45, user_sd=0.8)
    from xcorr_human_team_sim.simulate import simulate_user_accuracy

    rng = np.random.default_rng(3)
    rows = []
    users, trials = 400, 30
    z = rng.normal(0, truth.user_sd, users)
    from scipy.special import expit, logit

    for u in range(users):
        pr, pw = expit(logit(0.85) + z[u]), expit(logit(0.55) + z[u])
        for i in range(trials):
            right = i < 15
            correct = rng.random() < (pr if right else pw)
            rows.append(TrialRow(user=f"u{u}", query=f"q{i}", arm="A", ai_correct=right, confidence=0.5, user_correct=correct))
    est = assumptions_from_study(TrialTable(rows), "A", trials=trials)
    assert est.accept_if_ai_right == pytest.approx(0.85, abs=0.03) and est.accept_if_ai_wrong == pytest.approx(0.45, abs=0.03)
    assert est.user_sd == pytest.approx(0.8, abs=0.3)
    assert simulate_user_accuracy(truth, users=3, trials=30, sims=2, rng=rng).shape == (2, 3)


def test_authors_threshold_criterion_and_grid_by_hand() -> None:
    from xcorr_human_team_sim.model2 import authors_grid

    # 5 pick items (n_report 1): confidences and whether the AI was right
    conf = np.array([0.15, 0.2, 0.5, 0.9, 0.95, 0.3])
    right = np.array([True, False, True, True, True, False])
    ai = AIPredictions(method="m", correct=right, confidence=conf)
    hum = HumanTrials(arm="A", correct=np.array([True, False]), confidence=np.array([0.1, 0.9]), user=np.array([0, 1]))
    th = authors_grid(0.05)
    assert th[3] == 0.15000000000000002 and len(th) == 21 and th[-1] == 1.0
    # agreement of correct == (conf >= T) over all six items (seed makes no difference: the pick is everything
    # but one item, so use n_pick=6 and the permutation-free check below)
    agree = [(right == (conf >= t)).mean() for t in th]
    best = max(agree)
    want = th[max(i for i, a in enumerate(agree) if a == best)]  # ties to the highest T
    got = authors_threshold(ai, hum, seed=0, n_pick=6, n_report=0)
    assert got.threshold == want and got.method == "authors_split" and got.selection_accuracy == best
    # by hand: T in (0.3, 0.5] puts 0.15 (right) below -> 5/6; T = 0.15000000000000002 also excludes 0.15
    assert best == 5 / 6 and 0.3 < got.threshold <= 0.5
    # on the arange grid the item at exactly 0.15 falls below 0.15000000000000002; on the rounded grid it does not
    assert not (conf[0] >= th[3]) and conf[0] >= np.round(th[3], 10)
    old = authors_threshold(ai, hum, seed=0, n_pick=6, n_report=0, criterion="team_accuracy", grid="rounded")
    assert old.method == "team_accuracy_split"
    with pytest.raises(InputError):
        authors_threshold(ai, hum, seed=0, n_pick=6, n_report=0, criterion="median")  # type: ignore[arg-type]


def test_chunked_bootstrap_equals_one_shot() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    conf = rng.random(n)
    ai = AIPredictions(method="m", correct=rng.random(n) < conf, confidence=conf)
    hum = HumanTrials(arm="A", correct=rng.random(600) < 0.7, confidence=rng.random(600), user=np.arange(600) % 40)
    th = np.array([0.3, 0.6])
    one = bootstrap_team(ai, hum, th, n_boot=300, seed=5, chunk_bytes=1e12)
    small = bootstrap_team(ai, hum, th, n_boot=300, seed=5, chunk_bytes=8 * n * 7)  # 7 replicates a chunk
    for k in one:
        np.testing.assert_array_equal(one[k], small[k])
