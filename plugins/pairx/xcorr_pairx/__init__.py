"""PAIR-X (pairwise matching of intermediate representations, filtered by LRP relevance)."""
from .canonizers import EfficientNetCanonizer, SignalGate, is_efficientnet
from .conservative import ConservativePropagation
from .explain import PairXExplainer, PairXExplanation, explain_pair, explain_pair_sequential, explain_pairs
from .lrp import default_composite
from .metrics import binned_bhattacharyya, inverted_residual_mean, match_coverage

__version__ = "0.1.0"
__all__ = ["explain_pair", "explain_pairs", "explain_pair_sequential", "PairXExplanation", "PairXExplainer", "default_composite", "ConservativePropagation", "EfficientNetCanonizer", "SignalGate", "is_efficientnet",
           "inverted_residual_mean", "match_coverage", "binned_bhattacharyya", "__version__"]
