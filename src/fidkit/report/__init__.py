"""What evaluations return."""

from fidkit.report.ab import compare

__all__ = ["compare"]
