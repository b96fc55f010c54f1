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
