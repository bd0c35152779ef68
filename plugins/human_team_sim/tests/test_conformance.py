"""human_team_sim's study-level statistics through the core's conformance kit, on the bundled CUB study
(they read a trial table and AI predictions, not a pipeline's decisions: data= supplies them)."""

from xcorr_core.testing import check_statistic
from xcorr_human_team_sim import bundled_paths, load_ai_predictions, load_trials
from xcorr_human_team_sim.components import HumanAccuracy, StudyPower, TeamAccuracy, TeamComplementarity


def test_study_metrics_conform() -> None:
    trials, ai = load_trials(bundled_paths()[0]), load_ai_predictions(bundled_paths()[1])
    check_statistic(HumanAccuracy, data={"trials": trials}, config={"arm": "EMD-Corr"})
    check_statistic(TeamAccuracy, data={"trials": trials, "ai": ai}, config={"arm": "EMD-Corr", "ai_method": "emd", "threshold": 0.5, "n_boot": 200})
    check_statistic(TeamComplementarity, data={"trials": trials, "ai": ai},
                    config={"arm": "EMD-Corr", "ai_method": "emd", "threshold": 0.5, "n_boot": 200})
    arms = {"arm_a": {"name": "kNN", "accept_if_ai_right": 0.9, "accept_if_ai_wrong": 0.6},
            "arm_b": {"name": "EMD-Corr", "accept_if_ai_right": 0.9, "accept_if_ai_wrong": 0.4}}
    check_statistic(StudyPower, data={}, config={**arms, "sims": 200, "users": 20})
