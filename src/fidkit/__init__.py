"""fidkit: FID and friends for generative models, exact, fast and memory-bounded.

    >>> import fidkit
    >>> result = fidkit.fid("real_images/", "samples/")          # doctest: +SKIP
    >>> result.fid, result.n_a, result.n_b                        # doctest: +SKIP
"""

from fidkit._version import __version__

from fidkit.adm import adm_evaluate
from fidkit.api import DEFAULT_METRICS, MetricOptions, RunOptions, compute_reference, compute_stats, evaluate, fid
from fidkit.errors import BadInputError, FidkitError, FidkitWarning, IncomparableStatsError, WeightsUnavailableError
from fidkit.evaluator import Evaluator, evaluate_generator, sample_seeds, seeded_randn
from fidkit.extractors import ExtractorSpec, Preprocessing, Tap, custom_extractor, register
from fidkit.extractors.inception import MODES
from fidkit.mapreduce import Partial, PartialBuilder, combine, merge, partial
from fidkit.metrics.frechet import frechet_distance, frechet_distance_from_moments
from fidkit.metrics.differentiable import FrechetReference, frechet_distance_torch, kid_torch
from fidkit.differentiable import DifferentiableFID
from fidkit.report.result import EvalResult, FIDResult
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance
from fidkit.stats.reference import Reference

__all__ = [
    "fid", "evaluate", "compute_stats", "compute_reference", "MetricOptions", "RunOptions", "DEFAULT_METRICS",
    "EvalResult",
    "Reference", "frechet_distance", "frechet_distance_from_moments", "FeatureStats", "Provenance",
    "FIDResult", "MODES", "FidkitError", "BadInputError", "IncomparableStatsError", "WeightsUnavailableError",
    "FidkitWarning", "Evaluator", "evaluate_generator", "sample_seeds", "seeded_randn", "__version__",
    "ExtractorSpec", "Preprocessing", "Tap", "custom_extractor", "register",
    "DifferentiableFID", "FrechetReference",
    "partial", "merge", "combine", "Partial", "PartialBuilder", "frechet_distance_torch", "kid_torch", "adm_evaluate",
]
