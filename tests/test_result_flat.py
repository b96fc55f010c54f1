"""EvalResult.flat(): the scalars a metrics logger takes, and nothing it would choke on."""

import json
import math

import numpy as np

from fidkit.report.result import EvalResult
from fidkit.stats.provenance import Provenance


def _result(values, n_a=50, n_b=40):
    return EvalResult(values=values, n_a=n_a, n_b=n_b, a="ref.npz", b="fake/", mode="tf", provenance=Provenance())


def test_scalars_intervals_and_counts_only():
    r = _result({"fid": 12.5, "fid_ci": [11.0, 14.25], "kid": np.float64(0.003), "kd_subset_size": 1000,
                 "fid_inf_sizes": [5000, 10000], "fid_inf": 11.9, "note": "text", "near_copy": True,
                 "missing": None, "fd_dinov2_ci": (1.5, 2.5), "precision": np.float32(0.75),
                 "count0d": np.array(3), "flag0d": np.array(True), "odd_ci": [1.0, 2.0, 3.0]})
    assert r.flat() == {"fid": 12.5, "fid_lo": 11.0, "fid_hi": 14.25, "kid": 0.003, "kd_subset_size": 1000.0,
                        "fid_inf": 11.9, "fd_dinov2_lo": 1.5, "fd_dinov2_hi": 2.5, "precision": 0.75,
                        "count0d": 3.0, "n_a": 50.0, "n_b": 40.0}


def test_prefix_and_plain_floats():
    flat = _result({"fid": 3, "kid_std": 0.5}, n_a=None).flat(prefix="val/fidkit/")
    assert flat == {"val/fidkit/fid": 3.0, "val/fidkit/kid_std": 0.5, "val/fidkit/n_b": 40.0}
    assert all(type(v) is float for v in flat.values())          # JSON- and logger-safe, no numpy scalars
    assert json.loads(json.dumps(flat)) == flat


def test_nan_is_kept_as_a_number():
    """A NaN value is a number a logger shows as a gap; dropping it would hide that the metric failed."""
    assert math.isnan(_result({"fid": float("nan")}).flat()["fid"])
