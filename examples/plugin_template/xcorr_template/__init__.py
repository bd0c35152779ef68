"""Template xcorr plugin: a matcher, a re-ranker, an explainer and a metric."""
__version__ = "0.1.0"
