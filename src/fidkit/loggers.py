"""A result written where people already look: TensorBoard and Weights & Biases.

Both take :meth:`EvalResult.flat <fidkit.report.result.EvalResult.flat>` (scalar values, interval bounds as
``*_lo``/``*_hi``, the sample counts) under a prefix, so the numbers sit next to the training curves, one point
per evaluation step.  The packages are optional extras (``tensorboard``, ``wandb``), imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

from fidkit._optional import require
from fidkit.errors import BadInputError
from fidkit.report.result import EvalResult

#: Where the values go unless told otherwise: one panel group per tool.
DEFAULT_PREFIX = "fidkit/"


def log_tensorboard(result: EvalResult, writer: Any, step: int | None = None, *,
                    prefix: str = DEFAULT_PREFIX) -> dict[str, float]:
    """Write every scalar of ``result`` to TensorBoard at ``step``; returns what was written.

    ``writer`` is a ``torch.utils.tensorboard.SummaryWriter`` (or anything with its ``add_scalar``, e.g.
    Lightning's ``TensorBoardLogger.experiment``), or a log directory: then a writer is opened there, written
    and closed (event files append, so one directory collects every step).
    """
    values = _flat(result, prefix)
    own = isinstance(writer, (str, os.PathLike))
    if own:
        require("tensorboard", "tensorboard", "fidkit.loggers.log_tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(log_dir=os.fspath(writer))
    elif not callable(getattr(writer, "add_scalar", None)):
        raise BadInputError(f"log_tensorboard: writer must be a SummaryWriter or a log directory, "
                            f"got {type(writer).__name__}")
    try:
        for name, value in values.items():
            writer.add_scalar(name, value, global_step=step)
        writer.flush()
    finally:
        if own:
            writer.close()
    return values


def log_wandb(result: EvalResult, run: Any = None, step: int | None = None, *, prefix: str = DEFAULT_PREFIX,
              commit: bool | None = None) -> dict[str, float]:
    """Log every scalar of ``result`` to a Weights & Biases run (default: the active one, ``wandb.run``) at
    ``step``; returns what was logged.  ``step`` and ``commit`` mean what they mean to ``run.log``: W&B refuses a
    step lower than the run's current one, so pass the training step or leave it to W&B."""
    values = _flat(result, prefix)
    if run is None:
        run = require("wandb", "wandb", "fidkit.loggers.log_wandb").run
        if run is None:
            raise BadInputError("log_wandb: no active W&B run; call wandb.init() first or pass run=")
    elif not callable(getattr(run, "log", None)):
        raise BadInputError(f"log_wandb: run must be a wandb Run, got {type(run).__name__}")
    run.log(values, step=step, commit=commit)
    return values


def _flat(result: EvalResult, prefix: str) -> dict[str, float]:
    if not isinstance(result, EvalResult):
        raise BadInputError(f"expected a fidkit EvalResult, got {type(result).__name__} (a result dict from JSON: "
                            "log its numbers directly)")
    return result.flat(prefix=prefix)
