"""ADM's evaluator as a drop-in: ``fidkit.adm_evaluate(REF_BATCH, SAMPLE_BATCH)`` and ``fidkit adm``.

openai/guided-diffusion ``evaluations/evaluator.py REF SAMPLE`` scores a batch of
samples against a reference batch (``VIRTUAL_imagenet256_labeled.npz`` and
kin) with TF1 and an old NumPy.  Here it is one :func:`fidkit.evaluate` call:

    evaluate(ref_batch, sample_batch, metrics="fid,sfid,adm_is,adm_pr", preprocessing="tf")

The reference batch's stored ``mu``/``sigma`` and ``mu_s``/``sigma_s`` serve FID
and sFID (its ``arr_0`` images serve precision/recall); the samples are read as
images, streamed; IS reads the samples only.  The Inception network with
preprocessing ``tf`` is fed what ADM feeds its graph at ``ExpandDims:0``: the
uint8 pixels as float32 0..255, then the graph's own TF1 bilinear resize to 299
and ``(x - 128) / 128``.  See :mod:`fidkit.metrics.adm` for IS and the float16
precision/recall.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import fidkit.registry as registry
from fidkit.api import evaluate
from fidkit.data.arrays import _NpzMember
from fidkit.data.source import NUMPY_FILE_ERRORS, check_path_text, printable
from fidkit.errors import BadInputError
from fidkit.report.result import EvalResult
from fidkit.request import RunKeywords, RunOptions, WeightsLike

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["adm_evaluate", "check_adm_batch", "ADM_METRICS", "ADM_LINES"]

#: What ADM's evaluator computes, as fidkit metrics.
ADM_METRICS = "fid,sfid,adm_is,adm_pr"
#: The lines evaluator.py prints, in its order and wording: (label, result key).
ADM_LINES = (("Inception Score", "adm_is"), ("FID", "fid"), ("sFID", "sfid"), ("Precision", "adm_precision"),
             ("Recall", "adm_recall"))
_MOMENTS = ("mu", "sigma", "mu_s", "sigma_s")


def check_adm_batch(path: str | os.PathLike, role: str) -> dict:
    """Check that ``path`` is an ADM batch: an ``.npz`` whose ``arr_0`` is uint8 images ``N x H x W x 3`` (NHWC),
    with all of ``mu``/``sigma``/``mu_s``/``sigma_s`` or none.  Returns ``{"n", "shape", "moments"}``; a
    :class:`BadInputError` naming the file and ``role`` (``reference`` or ``sample``) otherwise.  Only headers
    are read."""
    check_path_text(path, f"{role} batch")
    where = f"{printable(str(path))} ({role} batch)"
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{where}: no such file")
    if not p.name.lower().endswith(".npz"):
        raise BadInputError(f"{where}: ADM batches are .npz files (arr_0: uint8 images N x H x W x 3)")
    try:
        with zipfile.ZipFile(p) as z:
            keys = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as e:
        raise BadInputError(f"{where}: not a readable .npz ({e})") from e
    if "arr_0" not in keys:
        raise BadInputError(f"{where}: no 'arr_0' (found {sorted(keys)}); ADM batches hold their images there")
    try:
        member = _NpzMember(p, "arr_0")
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{where}: cannot read 'arr_0' ({type(e).__name__}: {e})") from e
    shape, dtype = tuple(member.shape), member.dtype
    if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        hint = " (channels first? ADM's layout is N x H x W x 3)" if len(shape) == 4 and shape[1] == 3 else ""
        raise BadInputError(f"{where}: 'arr_0' is {dtype} of shape {shape}{hint}; ADM batches hold uint8 images "
                            "N x H x W x 3 (NHWC, 0..255)")
    if shape[0] == 0:
        raise BadInputError(f"{where}: 'arr_0' holds no images")
    present = [k for k in _MOMENTS if k in keys]
    if present and len(present) != len(_MOMENTS):
        raise BadInputError(f"{where}: has {', '.join(present)} but not "
                            f"{', '.join(k for k in _MOMENTS if k not in keys)}; ADM reads all four (FID and sFID)")
    return {"n": shape[0], "shape": shape, "moments": bool(present)}


def adm_evaluate(ref_batch: str | os.PathLike, sample_batch: str | os.PathLike, *, weights: WeightsLike = None,
                 force: bool = False, run: RunOptions | None = None,
                 **keywords: "Unpack[RunKeywords]") -> EvalResult:
    """What ``python evaluator.py REF_BATCH SAMPLE_BATCH`` computes (``ref_batch`` a path or the registry name of
    ADM's batch, e.g. ``imagenet256-adm``, downloaded on first use), as an :class:`EvalResult` with ``adm_is``,
    ``fid``, ``sfid``, ``adm_precision``, ``adm_recall`` (ADM's float16 arithmetic emulated) and
    ``adm_precision_f64``, ``adm_recall_f64`` (the float64 definition).

    FID/sFID compare the samples' moments with the reference batch's stored ``mu``/``sigma`` and
    ``mu_s``/``sigma_s`` (computed from its ``arr_0`` images when it stores none, as ADM does); IS reads the
    samples; precision/recall the reference batch's images against the samples.  The run options
    (``device``, ``batch_size``, ``workers``, ``limit``, ``progress``, ...) are :func:`fidkit.evaluate`'s; the
    preprocessing is ADM's (``tf``).
    """
    fixed = sorted(set(keywords) & {"preprocessing", "mode", "metrics", "features", "crop", "value_range"}
                   | {n for n in ("crop", "value_range") if run is not None and getattr(run, n) not in (None, "none")})
    if fixed:
        raise BadInputError(f"adm_evaluate: {', '.join(fixed)} fixed by ADM's protocol (metrics {ADM_METRICS}, "
                            "Inception with preprocessing 'tf', uint8 images N x H x W x 3)")
    entry = None if os.path.exists(ref_batch) else registry.lookup(str(ref_batch))
    if entry is not None and entry.fmt != "adm-batch":
        raise BadInputError(f"{ref_batch}: a published reference, but not one of ADM's reference batches (list "
                            "them: fidkit refs '*-adm')")
    if entry is None:  # a registry name is ADM's batch by its entry; a path is checked here
        check_adm_batch(ref_batch, "reference")
    check_adm_batch(sample_batch, "sample")
    return evaluate(ref_batch, sample_batch, metrics=ADM_METRICS, preprocessing="tf", weights=weights,
                    force=force, run=run, protocol="adm", **keywords)
