"""Embedded synthetic data (generated from a seed) and loaders for real data on disk."""
from .real import CUB200, ImageFolder, default_transform
from .synth_birds import ATTRIBUTE_NAMES, ATTRIBUTES, CLASS_NAMES, PART_NAMES, BirdAnnotation, SynthBirds
from .synth_herd import SynthHerd, apply_homography, homography_from_points
from . import cache

__all__ = [
    "SynthBirds", "BirdAnnotation", "PART_NAMES", "ATTRIBUTES", "ATTRIBUTE_NAMES", "CLASS_NAMES",
    "SynthHerd", "homography_from_points", "apply_homography",
    "CUB200", "ImageFolder", "default_transform",
]
