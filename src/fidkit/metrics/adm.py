"""The Inception Score and precision/recall of ADM's evaluator (openai/guided-diffusion
``evaluations/evaluator.py``), as that file computes them.

Most ImageNet leaderboard numbers (ADM, DiT, SiT, REPA, LlamaGen, VAR) come from
that script.  Where it departs from fidkit's own ``is`` and ``pr`` it is
followed here, so that ``adm_is`` and ``adm_precision``/``adm_recall`` are the
numbers it prints:

* **IS**: the generated samples only, split *in order* (no shuffle) into parts
  of 5000 (the last part may be smaller), the mean over parts only (no spread).
  The softmax over the 1008 unbiased logits and the score's arithmetic are
  float32, as in its TF softmax and its NumPy code (a probability that
  underflows to 0 makes its formula NaN: reported, with a warning).
* **Precision/recall** (its ``ManifoldEstimator``): k = 3, the radius of a
  point is its 4th smallest squared distance to its own set *including itself*,
  a point is inside a ball when its distance is ``<=`` the radius; distances in
  blocks of 10 000 x 10 000.  Its ``DistanceBlock`` computes each block in
  **float16**, and only when some value of a block is not finite recomputes
  that block in float32.  Those float16 values are emulated here (see
  :func:`adm_squared_distances`); beside them the float64 definition is
  computed (``adm_precision_f64``, ``adm_recall_f64``), with a warning when the
  two differ by more than one sample's share.

The float16 model (TF1 graph ops of ``_batch_pairwise_distances`` on float16
inputs): the features are rounded to float16; squares are float16; the squared
norms are summed *in float16* (TF's GPU Sum kernel for half accumulates in
half), in a fixed order modelled on that kernel (per lane of 256 a sequential
sum over the strided elements, then a pairwise tree over the lanes); ``u.v`` is
a matmul of the float16 values accumulated in float32 and rounded to float16
(cuBLAS with fp32 compute, TF's default for half matmuls); ``2 uv``,
``|u|^2 - 2 uv`` and ``+ |v|^2`` are each rounded to float16, then clamped at
0, then cast to float32 for the comparisons.  Every float16 operation is done
as the float32 operation rounded to float16, which is what Eigen's and NumPy's
half arithmetic do.  The summation orders of the real kernels depend on the
TF/CUDA version and device (and GPU vs CPU here): they move a distance by a
float16 unit in the last place now and then, hence a few samples of P/R.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.metrics._common import as_finite_2d
from fidkit.metrics.catalog import KEEP, Inputs, MetricSpec, register_metric

#: ADM's constants: IS split size, P/R neighbourhood and distance block sizes.
ADM_SPLIT_SIZE = 5000
ADM_K = 3
ADM_BLOCK = 10_000
#: Lanes of the modelled float16 norm reduction (a CUDA block's threads).
_LANES = 256
#: Rows of a distance block computed at once here (memory: rows x 10 000 float32/64).
_SUB_ROWS = 1024


# -- Inception Score ---------------------------------------------------------------------------------------

def adm_inception_score(logits, *, split_size: int = ADM_SPLIT_SIZE) -> float:
    """ADM's Inception Score of ``N x 1008`` unbiased logits (``pool3 @ W``): float32 softmax, parts of
    ``split_size`` rows in the given order, mean of the parts' scores (float32 arithmetic)."""
    x = as_finite_2d(logits, "logits", keep_float32=True)
    if isinstance(split_size, bool) or not isinstance(split_size, (int, np.integer)) or split_size < 1:
        raise BadInputError(f"split_size must be a positive integer, got {split_size!r}")
    probs = torch.softmax(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), dim=1).numpy()
    scores = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, len(probs), split_size):
            p = probs[start:start + split_size]
            log_marginal = np.log(p.mean(axis=0))[None, :]
            kl = (p * (np.log(p) - log_marginal)).sum(axis=1).mean()
            scores.append(np.exp(kl))
    value = float(np.mean(scores))
    if not np.isfinite(value):
        warnings.warn("adm_is: ADM's formula gives NaN here (a float32 softmax probability underflowed to 0, and "
                      "0 * log 0 is NaN in its NumPy code); fidkit's 'is' has no such problem", FidkitWarning,
                      stacklevel=2)
    return value


# -- distances as ADM's DistanceBlock computes them --------------------------------------------------------

def _h(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to float16 (round to nearest even, overflow to inf), kept in a float32 tensor."""
    return x.to(torch.float16).to(torch.float32)


def adm_squared_norms16(x16: torch.Tensor) -> torch.Tensor:
    """``reduce_sum(square(x), 1)`` of float16 rows ``x16`` (float32 tensor of float16 values), in float16."""
    sq = _h(x16 * x16)
    n, d = sq.shape
    pad = (-d) % _LANES
    if pad:
        sq = torch.nn.functional.pad(sq, (0, pad))
    lanes = sq.reshape(n, -1, _LANES)
    acc = lanes[:, 0]
    for j in range(1, lanes.shape[1]):       # each lane: its strided elements in order
        acc = _h(acc + lanes[:, j])
    width = _LANES
    while width > 1:                          # then a pairwise tree over the lanes
        width //= 2
        acc = _h(acc[:, :width] + acc[:, width:2 * width])
    return acc[:, 0]


def adm_squared_distances(u: torch.Tensor, v: torch.Tensor, *, precision: str = "float16",
                          norms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Squared distances between the rows of ``u`` and ``v`` (float32 tensors) as ADM's
    ``_batch_pairwise_distances`` computes them: ``max(|u|^2 - 2 u.v + |v|^2, 0)`` in ``precision``
    (``"float16"``: its float16 graph, emulated; ``"float32"``: its fallback; ``"float64"``: the definition).
    ``norms``: the rows' squared norms in that precision, when already computed.  Returns float32 values
    (float64 for ``"float64"``)."""
    if precision == "float16":
        u16, v16 = _h(u), _h(v)
        nu, nv = norms if norms is not None else (adm_squared_norms16(u16), adm_squared_norms16(v16))
        two_uv = _h(2 * _h(u16 @ v16.T))
        d = _h(_h(nu[:, None] - two_uv) + nv[None, :])
        return torch.clamp_min(d, 0.0)
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(precision)
    if dtype is None:
        raise BadInputError(f"precision must be float16, float32 or float64, got {precision!r}")
    u, v = u.to(dtype), v.to(dtype)
    nu, nv = norms if norms is not None else ((u * u).sum(1), (v * v).sum(1))
    return torch.clamp_min(nu[:, None] - 2 * (u @ v.T) + nv[None, :], 0.0)


class _Set:
    """One side's features on the device, with its squared norms in each precision (computed once: a norm
    depends on its row only, whatever block it is used in)."""

    def __init__(self, features: np.ndarray, device: torch.device):
        self.x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
        self._norms: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.x.shape[0]

    def norms(self, precision: str) -> torch.Tensor:
        if precision not in self._norms:
            if precision == "float16":
                self._norms[precision] = torch.cat([adm_squared_norms16(_h(self.x[i:i + 8192]))
                                                    for i in range(0, len(self), 8192)])
            else:
                x = self.x.to(torch.float64 if precision == "float64" else torch.float32)
                self._norms[precision] = (x * x).sum(1)
        return self._norms[precision]


def _chunks(a: _Set, rows: slice, b: _Set, cols: slice, precision: str) -> Iterator[tuple[int, torch.Tensor]]:
    """The distance block ``a[rows]`` x ``b[cols]`` in row chunks: (offset in the block, distances)."""
    na, nb = a.norms(precision), b.norms(precision)
    for s in range(rows.start, rows.stop, _SUB_ROWS):
        e = min(s + _SUB_ROWS, rows.stop)
        yield s - rows.start, adm_squared_distances(a.x[s:e], b.x[cols], precision=precision,
                                                    norms=(na[s:e], nb[cols]))


def _adm_block(a: _Set, rows: slice, b: _Set, cols: slice, reduce: Callable[[int, torch.Tensor], Any]
               ) -> tuple[list, bool]:
    """``reduce`` of every chunk of one of ADM's distance blocks, in float16 unless a value of the block is not
    finite, then (as its ``tf.cond``) of the whole block in float32.  Returns the results and whether the
    float32 fallback was taken."""
    out = []
    for offset, d in _chunks(a, rows, b, cols, "float16"):
        if not bool(torch.isfinite(d).all()):
            return [reduce(o, d32) for o, d32 in _chunks(a, rows, b, cols, "float32")], True
        out.append(reduce(offset, d))
    return out, False


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _radii(s: _Set, k: int, precision: str, block: int) -> tuple[torch.Tensor, int]:
    """Each row's (k+1)-th smallest squared distance to its own set, itself included (ADM's radii)."""
    out, fallbacks = [], 0
    for rows in _blocks(len(s), block):
        candidates = []
        for cols in _blocks(len(s), block):
            def smallest(_, d):
                return torch.topk(d, min(k + 1, d.shape[1]), dim=1, largest=False).values
            if precision == "float16":
                parts, fell_back = _adm_block(s, rows, s, cols, smallest)
                fallbacks += fell_back
            else:
                parts = [smallest(o, d) for o, d in _chunks(s, rows, s, cols, precision)]
            candidates.append(torch.cat(parts))
        out.append(torch.sort(torch.cat(candidates, dim=1), dim=1).values[:, k])
    return torch.cat(out), fallbacks


@dataclasses.dataclass(frozen=True)
class AdmPrecisionRecall:
    """ADM's precision and recall: ``precision``/``recall`` with its float16 distances emulated, and
    ``precision_f64``/``recall_f64`` by the float64 definition (same k, radii and ``<=``)."""

    precision: float
    recall: float
    precision_f64: float
    recall_f64: float
    k: int
    #: ADM distance blocks whose float16 values were not all finite, computed in float32 (as ADM does)
    float32_blocks: int


def _inside(real: _Set, r_real: torch.Tensor, fake: _Set, r_fake: torch.Tensor, precision: str, block: int
            ) -> tuple[float, float, int]:
    """(precision, recall, float32 fallbacks): generated rows inside some real ball, real rows inside some
    generated ball, in ADM's blocks (real rows x generated columns)."""
    fake_in = torch.zeros(len(fake), dtype=torch.bool, device=fake.x.device)
    real_in = torch.zeros(len(real), dtype=torch.bool, device=real.x.device)
    fallbacks = 0
    for rows in _blocks(len(real), block):
        for cols in _blocks(len(fake), block):
            def both(offset, d, rows=rows, cols=cols):
                r = r_real[rows.start + offset: rows.start + offset + d.shape[0]]
                return offset, (d <= r_fake[cols][None, :]).any(1), (d <= r[:, None]).any(0)
            if precision == "float16":
                parts, fell_back = _adm_block(real, rows, fake, cols, both)
                fallbacks += fell_back
            else:
                parts = [both(o, d) for o, d in _chunks(real, rows, fake, cols, precision)]
            for offset, real_part, fake_part in parts:
                real_in[rows.start + offset: rows.start + offset + len(real_part)] |= real_part
                fake_in[cols] |= fake_part
    return float(fake_in.double().mean()), float(real_in.double().mean()), fallbacks


def adm_precision_recall(real, fake, *, k: int = ADM_K, block: int = ADM_BLOCK,
                         device: str | torch.device | None = None) -> AdmPrecisionRecall:
    """ADM's precision and recall of ``fake`` (generated, ``N x d``) against ``real`` (its reference batch),
    float16 emulated and float64, on ``device`` (default: CUDA when available, as ADM's TF session)."""
    real_np = as_finite_2d(real, "real features", keep_float32=True)
    fake_np = as_finite_2d(fake, "fake features", keep_float32=True)
    if real_np.shape[1] != fake_np.shape[1]:
        raise BadInputError(f"real and fake features differ in width: {real_np.shape[1]} vs {fake_np.shape[1]}")
    for name, x in (("real", real_np), ("fake", fake_np)):
        if len(x) < k + 1:
            raise BadInputError(f"{name} features: {len(x)} rows; ADM's precision/recall needs at least {k + 1} "
                                f"(the radius is the distance to the {k}-th neighbour)")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    r, f = _Set(real_np, device), _Set(fake_np, device)
    values, fallbacks = {}, 0
    for precision in ("float16", "float64"):
        r_real, n1 = _radii(r, k, precision, block)
        r_fake, n2 = _radii(f, k, precision, block)
        p, rec, n3 = _inside(r, r_real, f, r_fake, precision, block)
        values[precision] = (p, rec)
        fallbacks += n1 + n2 + n3
    (p16, r16), (p64, r64) = values["float16"], values["float64"]
    return AdmPrecisionRecall(p16, r16, p64, r64, k, fallbacks)


# -- the metrics -------------------------------------------------------------------------------------------

def _compute_is(x: Inputs) -> dict[str, Any]:
    return {"adm_is": adm_inception_score(x.fake_features)}


def _compute_pr(x: Inputs) -> dict[str, Any]:
    pr = adm_precision_recall(x.real_features, x.fake_features)
    n_fake, n_real = len(x.fake_features), len(x.real_features)
    # more than one sample apart (counted in samples: 1/N itself is not exact in floating point)
    if abs(pr.precision - pr.precision_f64) * n_fake > 1.5 or abs(pr.recall - pr.recall_f64) * n_real > 1.5:
        warnings.warn(f"adm_pr: ADM's float16 distances move precision/recall away from their definition: "
                      f"precision {pr.precision:.4f} (ADM) vs {pr.precision_f64:.4f} (float64), recall "
                      f"{pr.recall:.4f} (ADM) vs {pr.recall_f64:.4f} (float64); the ADM values are comparable "
                      "with published ADM numbers only", FidkitWarning, stacklevel=2)
    if pr.float32_blocks:
        warnings.warn(f"adm_pr: {pr.float32_blocks} distance block(s) overflowed float16 and were computed in "
                      "float32, as ADM's evaluator does", FidkitWarning, stacklevel=2)
    return {"adm_precision": pr.precision, "adm_recall": pr.recall,
            "adm_precision_f64": pr.precision_f64, "adm_recall_f64": pr.recall_f64}


IS_SPEC = register_metric(MetricSpec(
    "adm_is", "Inception Score as ADM's evaluator computes it (ordered splits of 5000, mean only, float32)",
    "logits", None, KEEP, _compute_is, extractors=("inception",), labels={"adm_is": "Inception Score (ADM)"},
    min_samples=lambda o: (None, 1)))

PR_SPEC = register_metric(MetricSpec(
    "adm_pr", "precision/recall as ADM's evaluator computes them (k=3, float16 distances emulated; float64 "
    "beside)", "embedding", KEEP, KEEP, _compute_pr, extractors=("inception",),
    outputs=("adm_precision", "adm_recall", "adm_precision_f64", "adm_recall_f64"),
    labels={"adm_precision": "Precision (ADM, float16)", "adm_recall": "Recall (ADM, float16)",
            "adm_precision_f64": "Precision (ADM, float64)", "adm_recall_f64": "Recall (ADM, float64)"},
    min_samples=lambda o: (ADM_K + 1, ADM_K + 1)))
