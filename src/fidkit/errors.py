"""One error hierarchy: every failure fidkit raises on purpose is a ``FidkitError``."""


class FidkitError(Exception):
    """Base class of all errors fidkit raises deliberately."""


class BadInputError(FidkitError, ValueError):
    """An input (file, array, argument) cannot be used; the message names it."""


class IncomparableStatsError(FidkitError):
    """Two sets of statistics were computed differently and cannot be compared."""


class WeightsUnavailableError(FidkitError):
    """Network weights are missing, corrupt, or could not be downloaded."""


class OutputError(FidkitError):
    """The result was computed (and printed) but could not be written where asked."""


class FidkitWarning(UserWarning):
    """A number was computed but something about it deserves attention."""


class ReferenceUnavailableError(FidkitError):
    """Published reference statistics are missing from the cache, could not be downloaded, or their file differs
    from the sha256 recorded at first use (or pinned); the message names the file, the URL and the cache path."""
