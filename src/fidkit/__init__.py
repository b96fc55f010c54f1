"""fidkit: FID and friends for generative models, exact, fast and memory-bounded.

    >>> import fidkit
    >>> result = fidkit.fid("real_images/", "samples/")          # doctest: +SKIP
    >>> result.fid, result.n_a, result.n_b                        # doctest: +SKIP
"""

__version__ = "0.1.0"

from .api import compute_stats, fid
from .errors import BadInputError, FidkitError, FidkitWarning, IncomparableStatsError, WeightsUnavailableError
from .metrics.frechet import frechet_distance, frechet_distance_from_moments
from .preprocess import MODES
from .provenance import Provenance
from .result import FIDResult
from .stats import FeatureStats

__all__ = [
    "fid", "compute_stats", "frechet_distance", "frechet_distance_from_moments", "FeatureStats", "Provenance",
    "FIDResult", "MODES", "FidkitError", "BadInputError", "IncomparableStatsError", "WeightsUnavailableError",
    "FidkitWarning", "__version__",
]
