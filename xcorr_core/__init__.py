"""xcorr core: hooks, registry, typed results, features, gallery index, kNN baseline.

Plugins register Explainers, Matchers, ReRankers and Metrics through the
entry-point group ``xcorr``; this package never imports a plugin.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .components import (BatchedReRanker, Case, CellReRanker, Component, ComponentInfo, Explainer, Matcher, MethodScopedExplainer, Metric,
                         PluginInfo, ReRanker, StrictConfig)
from .errors import (
    ComponentOutputError,
    ConfigError,
    IndexFileError,
    InputError,
    LayerNotFoundError,
    ModelForwardError,
    PluginLoadError,
    UnknownComponentError,
    RegistrationError,
    XcorrError,
)
from .features import FeatureExtractor, Features, layer_names
from .hookspecs import hookimpl, hookspec
from .index import GalleryIndex, SearchResult
from .knn import KNNClassifier, KNNPrediction, NeighbourExplanation, majority_vote
from .pipeline import Pipeline
from .spec import ComponentSpec, PipelineSpec
from .registry import components, create, get_class, plugins, register_plugin, reload_plugins
from .results import Explanation, Matches, MethodResult, MetricResult, Ranking, RunResult, Tensor, TensorModel
from .store import SpatialStore
from .cells import CellMaps

__all__ = ["BatchedReRanker", "CellReRanker", "MethodScopedExplainer", 
    "__version__",
    "hookimpl", "hookspec",
    "components", "create", "get_class", "plugins", "register_plugin", "reload_plugins",
    "Component", "Explainer", "Matcher", "ReRanker", "Metric", "Case", "StrictConfig", "ComponentInfo", "PluginInfo",
    "Ranking", "Matches", "Explanation", "MetricResult", "Tensor", "TensorModel",
    "FeatureExtractor", "Features", "layer_names",
    "GalleryIndex", "SearchResult", "SpatialStore", "CellMaps",
    "Pipeline", "PipelineSpec", "ComponentSpec", "RunResult", "MethodResult",
    "KNNClassifier", "KNNPrediction", "NeighbourExplanation", "majority_vote",
    "XcorrError", "ConfigError", "UnknownComponentError", "RegistrationError", "InputError", "IndexFileError", "LayerNotFoundError", "PluginLoadError",
    "ComponentOutputError", "ModelForwardError",
]
