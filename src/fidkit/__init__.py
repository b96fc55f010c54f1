"""fidkit: FID and friends for generative models, exact, fast and memory-bounded.

    >>> import fidkit
    >>> result = fidkit.fid("real_images/", "samples/")          # doctest: +SKIP
    >>> result.fid, result.n_a, result.n_b                        # doctest: +SKIP
"""

__version__ = "0.1.0"

from .api import DEFAULT_METRICS, MetricOptions, compute_reference, compute_stats, evaluate, fid
from .errors import BadInputError, FidkitError, FidkitWarning, IncomparableStatsError, WeightsUnavailableError
from .metrics.frechet import frechet_distance, frechet_distance_from_moments
from .preprocess import MODES
from .provenance import Provenance
from .reference import Reference
from .result import EvalResult, FIDResult
from .stats import FeatureStats
from .evaluator import Evaluator, evaluate_generator, sample_seeds, seeded_randn

__all__ = [
    "fid", "evaluate", "compute_stats", "compute_reference", "MetricOptions", "DEFAULT_METRICS", "EvalResult",
    "Reference", "frechet_distance", "frechet_distance_from_moments", "FeatureStats", "Provenance",
    "FIDResult", "MODES", "FidkitError", "BadInputError", "IncomparableStatsError", "WeightsUnavailableError",
    "FidkitWarning", "Evaluator", "evaluate_generator", "sample_seeds", "seeded_randn", "__version__",
]
