"""Human-AI team accuracy from human-study data (the EMD/CHM-Corr paper's interaction
models 1 and 2) and study design by simulation."""
from .data import AIPredictions, ColumnMap, TrialRow, TrialTable
from .loading import bundled_paths, load_ai_predictions, load_pickled_predictions, load_trials
from .model1 import pairwise_tests, summarize_arms
from .model2 import authors_threshold, complementarity, cv_threshold, human_trials, team_accuracy, team_curve
from .simulate import ArmAssumption, assumptions_from_study, power, users_needed

__version__ = "0.1.0"
__all__ = ["load_trials", "load_ai_predictions", "load_pickled_predictions", "bundled_paths", "ColumnMap", "TrialRow", "TrialTable", "AIPredictions",
           "summarize_arms", "pairwise_tests", "human_trials", "team_accuracy", "team_curve", "authors_threshold", "cv_threshold",
           "complementarity", "ArmAssumption", "power", "users_needed", "assumptions_from_study", "__version__"]
