"""Semantically consistent visual counterfactuals (Vandenhende et al., ECCV 2022) and the Goyal et al. baseline.

Modules: ``split`` (f | g), ``search`` (the greedy edit search), ``explainer`` (components and the
`Counterfactual` result), ``auxiliary`` (u models), ``distractors``, ``metrics`` (Near-KP, Same-KP,
#Edits, in-box, part clustering), ``attributes`` (section 5), ``figure``, ``study`` (Tables 3, 4, 6),
``training`` (the shipped auxiliary models' recipes).
"""
from .auxiliary import AuxiliaryModel, PartsDetector, load_auxiliary, load_parts_detector
from .explainer import Counterfactual, GoyalExplainer, SCCExplainer, counterfactual_from_features, explain_counterfactual
from .search import Edit, apply_edits, prefilter_candidates, search_counterfactual, semantic_cosine, semantic_log_likelihood
from .split import SPLIT_PRESETS, ModelSplit, PoolLinear, split_model

__version__ = "0.1.0"
__all__ = [
    "split_model", "ModelSplit", "PoolLinear", "SPLIT_PRESETS",
    "SCCExplainer", "GoyalExplainer", "Counterfactual", "explain_counterfactual", "counterfactual_from_features",
    "search_counterfactual", "semantic_log_likelihood", "semantic_cosine", "prefilter_candidates", "apply_edits", "Edit",
    "AuxiliaryModel", "PartsDetector", "load_auxiliary", "load_parts_detector", "__version__",
]
