"""Metrics: pure functions of statistics or features (no I/O, no models)."""

from .bootstrap import BootstrapInterval, bootstrap_interval, fid_bootstrap, fid_noise_floor
from .frechet import frechet_distance, frechet_distance_from_moments, trace_sqrt_product
from ._common import ScoreWithSpread
from .inception_score import inception_score
from .infinity import Extrapolation, extrapolate_to_infinity, fid_infinity, is_infinity
from .kid import kernel_inception_distance
from .prdc import DensityCoverage, PrecisionRecall, density_coverage, precision_recall

__all__ = [
    "frechet_distance", "frechet_distance_from_moments", "trace_sqrt_product",
    "inception_score", "kernel_inception_distance", "precision_recall", "density_coverage",
    "fid_infinity", "is_infinity", "extrapolate_to_infinity",
    "bootstrap_interval", "fid_bootstrap", "fid_noise_floor",
    "ScoreWithSpread", "PrecisionRecall", "DensityCoverage", "Extrapolation", "BootstrapInterval",
]
