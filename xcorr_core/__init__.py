"""xcorr core: hooks, registry, typed results, features, gallery index, kNN baseline.

Plugins register Explainers, Matchers, ReRankers, Metrics (per query) and Statistics (per study
or model) through the entry-point group ``xcorr``; this package never imports a plugin.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .cells import CellMaps
from .components import (
    BatchedReRanker,
    Case,
    CellReRanker,
    Component,
    ComponentInfo,
    Explainer,
    Matcher,
    MethodScopedExplainer,
    Metric,
    PluginInfo,
    ReRanker,
    Statistic,
    StrictConfig,
)
from .decisions import Decisions
from .errors import (
    ComponentOutputError,
    ConfigError,
    IndexFileError,
    InputError,
    LayerNotFoundError,
    ModelForwardError,
    PluginLoadError,
    RegistrationError,
    StorageError,
    UnknownComponentError,
    XcorrError,
)
from .features import FeatureExtractor, Features, layer_names
from .hookspecs import hookimpl, hookspec
from .index import GalleryIndex, SearchResult
from .knn import KNNClassifier, KNNPrediction, NeighbourExplanation, majority_vote
from .pipeline import Pipeline
from .registry import components, create, get_class, plugins, register_plugin, reload_plugins
from .results import Explanation, Matches, MethodResult, MetricResult, Ranking, RunResult, Tensor, TensorModel
from .spec import ComponentSpec, PipelineSpec
from .store import SpatialStore

#: the supported API for plugin authors and users; submodules hold more (xcorr_core.models, .data,
#: .jobs, .stats, .vocabulary, .testing, .validation), and names with a leading underscore are internal
__all__ = [
    "__version__",
    # plugins: hooks and the registry
    "hookimpl", "hookspec", "components", "create", "get_class", "plugins", "register_plugin", "reload_plugins",
    # component bases, their optional protocols, and what they exchange
    "Component", "Explainer", "Matcher", "ReRanker", "Metric", "Statistic", "StrictConfig", "ComponentInfo", "PluginInfo",
    "BatchedReRanker", "CellReRanker", "MethodScopedExplainer", "Case",
    "Ranking", "Matches", "Explanation", "MetricResult", "Tensor", "TensorModel",
    # features, index, store
    "FeatureExtractor", "Features", "layer_names", "GalleryIndex", "SearchResult", "SpatialStore", "CellMaps",
    # pipelines
    "Pipeline", "PipelineSpec", "ComponentSpec", "Decisions", "RunResult", "MethodResult",
    "KNNClassifier", "KNNPrediction", "NeighbourExplanation", "majority_vote",
    # errors
    "XcorrError", "ConfigError", "UnknownComponentError", "RegistrationError", "InputError", "IndexFileError", "StorageError",
    "LayerNotFoundError", "PluginLoadError", "ComponentOutputError", "ModelForwardError",
]
