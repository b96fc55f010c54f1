"""A NumPy re-implementation of the NumPy parts of ADM's evaluator (openai/guided-diffusion
``evaluations/evaluator.py``), written for the tests: its IS formula on a float32 softmax, its ManifoldEstimator
(blocks, ``np.partition``, radii including self, ``<=``) with its float16 DistanceBlock emulated in NumPy float16
(each NumPy half operation rounds the float32 result, as TF's Eigen::half does; squared norms summed in float16 per
lane of 256 then in a tree, ``u.v`` accumulated in float32), its float32 fallback, and the float64 definition."""

from __future__ import annotations

import numpy as np

F16, F32 = np.float16, np.float32


def np_adm_is(logits: np.ndarray, split_size: int) -> float:
    z = logits.astype(F32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    preds = (e / e.sum(axis=1, keepdims=True)).astype(F32)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


def np_norms16(x16: np.ndarray) -> np.ndarray:
    """reduce_sum(square(x)) in float16: per lane of 256 sequentially over strided elements, then a tree."""
    sq = x16 * x16
    n, d = sq.shape
    sq = np.concatenate([sq, np.zeros((n, (-d) % 256), F16)], axis=1).reshape(n, -1, 256)
    acc = sq[:, 0].copy()
    for j in range(1, sq.shape[1]):
        acc = acc + sq[:, j]
    while acc.shape[1] > 1:
        half = acc.shape[1] // 2
        acc = acc[:, :half] + acc[:, half:]
    return acc[:, 0]


def np_distance_block(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, bool]:
    u16, v16 = u.astype(F16), v.astype(F16)
    with np.errstate(over="ignore", invalid="ignore"):
        uv = (u16.astype(F32) @ v16.astype(F32).T).astype(F16)
        d = np.maximum(np_norms16(u16)[:, None] - F16(2) * uv + np_norms16(v16)[None, :], F16(0))
    if np.isfinite(d).all():
        return d.astype(F32), False
    u32, v32 = u.astype(F32), v.astype(F32)
    nu, nv = (u32 * u32).sum(1), (v32 * v32).sum(1)
    return np.maximum(nu[:, None] - 2 * (u32 @ v32.T) + nv[None, :], F32(0)), True


def np_manifold(ref: np.ndarray, fake: np.ndarray, *, block: int, dist, k: int = 3):
    """ADM's ManifoldEstimator (manifold_radii twice, then evaluate_pr) with ``dist`` as its DistanceBlock."""
    fallbacks = [0]

    def pair(u, v):
        d, fell = dist(u, v)
        fallbacks[0] += fell
        return d

    def radii(f):
        n = len(f)
        out = np.zeros(n, dtype=F32 if dist is np_distance_block else np.float64)
        for b1 in range(0, n, block):
            rows = f[b1:b1 + block]
            row = np.concatenate([pair(rows, f[b2:b2 + block]) for b2 in range(0, n, block)], axis=1)
            out[b1:b1 + len(rows)] = np.partition(row, np.arange(k + 1), axis=1)[:, k]
        return out

    r_ref, r_fake = radii(ref), radii(fake)
    ref_in = np.zeros(len(ref), bool)
    fake_in = np.zeros(len(fake), bool)
    for b1 in range(0, len(ref), block):
        for b2 in range(0, len(fake), block):
            d = pair(ref[b1:b1 + block], fake[b2:b2 + block])[..., None]
            ref_in[b1:b1 + block] |= (d <= r_fake[b2:b2 + block][:, None]).any(axis=1)[:, 0]
            fake_in[b2:b2 + block] |= (d <= r_ref[b1:b1 + block][:, None, None]).any(axis=0)[:, 0]
    return fake_in.mean(), ref_in.mean(), fallbacks[0]


def np_distance64(u, v):
    u, v = u.astype(np.float64), v.astype(np.float64)
    return ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1), False
