"""ADM's IS and precision/recall against a NumPy re-implementation of evaluator.py's NumPy parts
(tests/adm_numpy.py): its IS formula, its ManifoldEstimator with its float16 DistanceBlock, the float64 definition.

Features are dyadic rationals (k/8) or small integers, so every float32 sum in a matmul is exact and the
comparison does not depend on the BLAS's summation order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adm_numpy import F32, np_adm_is, np_distance64, np_distance_block, np_manifold
from fidkit.errors import BadInputError
from fidkit.metrics.adm import adm_inception_score, adm_precision_recall


def dyadic(rng, n, d, mean=0.4, spread=0.25):
    """Inception-like non-negative features (pool3 is post-ReLU), multiples of 1/8."""
    return np.clip(np.round((mean + spread * rng.standard_normal((n, d))) * 8), 0, None).astype(F32) / 8


# -- Inception Score ---------------------------------------------------------------------------------------

def test_is_equals_adm_formula_with_ordered_splits():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((120, 1008)) * 3).astype(F32)
    logits[:40] += 6 * np.eye(1008, dtype=F32)[rng.integers(0, 50, 40)]  # confident rows: splits differ
    for split in (50, 5000):
        assert adm_inception_score(logits, split_size=split) == pytest.approx(np_adm_is(logits, split), rel=2e-6)
    # order matters (no shuffle): reversing the rows changes the parts and the score
    assert adm_inception_score(logits[::-1], split_size=50) != pytest.approx(
        adm_inception_score(logits, split_size=50), rel=1e-4)
    assert adm_inception_score(logits[::-1], split_size=50) == pytest.approx(np_adm_is(logits[::-1], 50), rel=2e-6)


def test_is_of_uniform_predictions_is_one():
    assert adm_inception_score(np.zeros((10, 1008), F32)) == pytest.approx(1.0, abs=1e-6)


# -- precision / recall ------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [10_000, 7])
def test_pr_equals_numpy_manifold_estimator(block):
    rng = np.random.default_rng(1)
    ref, fake = dyadic(rng, 60, 2048), dyadic(rng, 45, 2048, mean=0.45)
    pr = adm_precision_recall(ref, fake, block=block, device="cpu")
    p16, r16, fell = np_manifold(ref, fake, block=block, dist=np_distance_block)
    p64, r64, _ = np_manifold(ref, fake, block=block, dist=np_distance64)
    assert (pr.precision, pr.recall) == (p16, r16)
    assert (pr.precision_f64, pr.recall_f64) == (p64, r64)
    assert pr.float32_blocks == fell == 0


def test_large_norms_float16_far_from_definition():
    """Features on a 4-d manifold at offset 3.5: squared norms near 25 000 (a float16 ulp of 16, of 32 for 2 u.v)
    next to squared distances of a few tens.  ADM's distances are float16 noise at that scale: its recall is 1.0
    where the float64 definition gives about 0.3."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 2048))
    z_ref, z_fake = rng.standard_normal((80, 4)), 0.5 + 0.6 * rng.standard_normal((70, 4))
    ref = (3.5 + np.round(z_ref @ a * 0.24) / 8).astype(F32)
    fake = (3.5 + np.round(z_fake @ a * 0.24) / 8).astype(F32)
    pr = adm_precision_recall(ref, fake, device="cpu")
    p16, r16, fell = np_manifold(ref, fake, block=10_000, dist=np_distance_block)
    p64, r64, _ = np_manifold(ref, fake, block=10_000, dist=np_distance64)
    assert fell == 0
    assert (pr.precision, pr.recall, pr.precision_f64, pr.recall_f64) == (p16, r16, p64, r64)
    assert pr.recall - pr.recall_f64 > 0.5


def test_float16_overflow_falls_back_to_float32_per_block():
    """Rows with squared norms above float16's 65504 make their blocks non-finite: ADM recomputes those blocks in
    float32 (and only those)."""
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 4, (30, 2048)).astype(F32)
    fake = rng.integers(0, 4, (24, 2048)).astype(F32)
    ref[:5] = rng.integers(6, 10, (5, 2048))               # |u|^2 ~ 130 000: infinite in float16
    pr = adm_precision_recall(ref, fake, block=10, device="cpu")
    p16, r16, fell = np_manifold(ref, fake, block=10, dist=np_distance_block)
    p64, r64, _ = np_manifold(ref, fake, block=10, dist=np_distance64)
    assert fell > 0 and pr.float32_blocks == fell
    assert (pr.precision, pr.recall, pr.precision_f64, pr.recall_f64) == (p16, r16, p64, r64)


def test_radius_includes_self_and_boundary_is_inside():
    # 1-D points 0, 1, 2, 3 (squared radii with self: 9, 4, 4, 9); a fake exactly on a boundary counts (<=)
    ref = np.zeros((4, 8), F32)
    ref[:, 0] = [0, 1, 2, 3]
    fake = np.zeros((4, 8), F32)
    fake[:, 0] = [6, 20, 21, 22]                           # 6 is at squared distance 9 from 3: inside
    pr = adm_precision_recall(ref, fake, device="cpu")
    assert pr.precision == pr.precision_f64 == 0.25


def test_pr_needs_k_plus_one_rows():
    with pytest.raises(BadInputError, match="at least 4"):
        adm_precision_recall(np.zeros((3, 4), F32), np.zeros((5, 4), F32), device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pr_on_cuda_equals_cpu():
    rng = np.random.default_rng(4)
    ref, fake = dyadic(rng, 60, 2048), dyadic(rng, 45, 2048, mean=0.45)
    cpu = adm_precision_recall(ref, fake, device="cpu")
    assert adm_precision_recall(ref, fake, device="cuda") == cpu
