"""ProtoKNN ("This looks like it rather than that", ICLR 2023 submission): prototype profiles for
similarity-based classifiers, its cluster and auxiliary losses, kNN inference over profiles and
prototype explanations. No public code exists; every value the paper leaves open is a config
field (see the docs page's table of assumptions)."""
from .explain import ProtoKNNExplanation, contributions, explain_profile
from .knn import ProtoKNNClassifier, ProtoKNNPrediction, vote
from .losses import ClusterLoss, MarginLoss, ProxyAnchorLoss, class_affiliation, gumbel_affiliation, patch_costs, sinkhorn_assignment
from .model import ProtoKNNNet, ProtoOutput
from .pretrained import load_model, load_pretrained, save_model
from .projection import ProjectionResult, encode, project_prototypes
from .prototypes import prototype_variance, spread_prototypes
from .training import ProtoKNNLoss, TrainConfig, train

__version__ = "0.1.0"
__all__ = ["ProtoKNNNet", "ProtoOutput", "spread_prototypes", "prototype_variance", "MarginLoss", "ProxyAnchorLoss", "ClusterLoss",
           "gumbel_affiliation", "class_affiliation", "sinkhorn_assignment", "patch_costs", "ProtoKNNLoss", "TrainConfig", "train",
           "project_prototypes", "encode", "ProjectionResult", "ProtoKNNClassifier", "ProtoKNNPrediction", "vote",
           "ProtoKNNExplanation", "contributions", "explain_profile", "load_pretrained", "load_model", "save_model", "__version__"]
