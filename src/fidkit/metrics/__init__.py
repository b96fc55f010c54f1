"""Metrics: pure functions of statistics or features (no I/O, no models)."""

from .frechet import frechet_distance, frechet_distance_from_moments, trace_sqrt_product

__all__ = ["frechet_distance", "frechet_distance_from_moments", "trace_sqrt_product"]
