"""Metrics: pure functions of statistics or features (no I/O, no models)."""

from fidkit.metrics.cmmd import cmmd
from fidkit.metrics.bootstrap import BootstrapInterval, bootstrap_interval, fid_bootstrap, fid_noise_floor
from fidkit.metrics.frechet import (FrechetTerms, frechet_distance, frechet_distance_from_moments,
                                    frechet_terms_from_moments, trace_sqrt_product)
from fidkit.metrics._common import ScoreWithSpread
from fidkit.metrics.inception_score import inception_score
from fidkit.metrics.infinity import Extrapolation, extrapolate_to_infinity, fid_infinity, is_infinity
from fidkit.metrics.kid import kernel_inception_distance
from fidkit.metrics.prdc import DensityCoverage, PrecisionRecall, density_coverage, precision_recall
# metrics declared in modules of their own register themselves on import
from fidkit.metrics.vendi import vendi_score
from fidkit.metrics.adm import adm_inception_score, adm_precision_recall

__all__ = [
    "frechet_distance", "frechet_distance_from_moments", "trace_sqrt_product", "FrechetTerms",
    "frechet_terms_from_moments",
    "inception_score", "kernel_inception_distance", "cmmd", "precision_recall", "density_coverage",
    "fid_infinity", "is_infinity", "extrapolate_to_infinity",
    "bootstrap_interval", "fid_bootstrap", "fid_noise_floor", "vendi_score",
    "adm_inception_score", "adm_precision_recall",
    "ScoreWithSpread", "PrecisionRecall", "DensityCoverage", "Extrapolation", "BootstrapInterval",
]
