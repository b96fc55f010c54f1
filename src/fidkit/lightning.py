"""A Lightning callback that evaluates the generator every K steps or epochs and logs the result.

:class:`FidkitCallback` calls :func:`fidkit.evaluate_generator` with the user's sampling function, so the samples
depend only on ``(seed, sample index)``: the value does not depend on the batch size or on the number of processes,
and under DDP each process draws its share and every process gets the result for all ``n_samples``.  The result
goes to ``pl_module.log_dict`` (so to every logger of the trainer: TensorBoard, W&B, CSV, ...) under ``prefix``, and
optionally to a JSONL file (one result dict per line with its ``step``, what ``fidkit report`` reads).
Lightning is an optional extra (``pip install 'fidkit[lightning]'``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

import torch

from fidkit._io import atomic_write
from fidkit._optional import require
from fidkit.errors import BadInputError
from fidkit.evaluator import Evaluator, evaluate_generator
from fidkit.report.result import EvalResult
from fidkit.request import SourceLike

require("lightning", "lightning", "fidkit.lightning")
from lightning.pytorch.callbacks import Callback  # noqa: E402  (after the check that names the extra)

#: ``sample_fn(pl_module, seeds) -> images``: one int64 seed per sample (see :func:`fidkit.seeded_randn`).
SampleFn = Callable[[Any, torch.Tensor], Any]


class FidkitCallback(Callback):
    """Evaluate ``sample_fn`` against ``reference`` every ``every_n_steps`` optimizer steps and/or every
    ``every_n_epochs`` training epochs (and, with ``on_train_end=True``, once more at the end).

    ``sample_fn(pl_module, seeds)`` returns ``len(seeds)`` images as :meth:`Evaluator.update
    <fidkit.Evaluator.update>` takes them (e.g. ``pl_module.ema(fidkit.seeded_randn(seeds, 512,
    device=pl_module.device))`` with ``value_range=(-1, 1)``); it runs under ``torch.inference_mode`` with the
    module in eval mode (its training mode is restored afterwards).  ``n_samples`` images are drawn, ``batch_size``
    at a time, with seeds derived from ``seed``; the network takes ``network_batch_size`` (default ``batch_size``)
    at a time.  The remaining keywords (``metrics``, ``features``, ``weights``,
    ``value_range``, ``kid_subsets``, ...) build the :class:`~fidkit.Evaluator`, once, at ``setup``, on the
    process's device (``trainer.strategy.root_device``) unless ``device=`` says otherwise.  Every process must run the callback (Lightning does).

    The last result is :attr:`result`; ``jsonl`` (a path) appends one line per evaluation on rank 0:
    ``{"step": global_step, "epoch": epoch, **result.to_dict()}``.
    """

    def __init__(self, sample_fn: SampleFn, *, reference: SourceLike,
                 metrics: str | Iterable[str] | None = None, n_samples: int = 5000,
                 every_n_steps: int | None = None, every_n_epochs: int | None = None, on_train_end: bool = False,
                 batch_size: int = 64, network_batch_size: int | None = None, seed: int = 0, prefix: str = "fidkit/", jsonl: str | os.PathLike | None = None,
                 **evaluator_options: Any):
        if every_n_steps is None and every_n_epochs is None and not on_train_end:
            raise BadInputError("FidkitCallback: give every_n_steps=, every_n_epochs= or on_train_end=True")
        for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs),
                            ("n_samples", n_samples), ("batch_size", batch_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BadInputError(f"FidkitCallback: {name} must be a positive integer, got {value!r}")
        if "evaluator" in evaluator_options or "distributed" in evaluator_options:
            raise BadInputError("FidkitCallback builds its own Evaluator (combining processes when Lightning runs "
                                "several): pass the Evaluator's options instead")
        self.sample_fn = sample_fn
        self.reference, self.metrics, self.n_samples = reference, metrics, n_samples
        self.every_n_steps, self.every_n_epochs, self.at_end = every_n_steps, every_n_epochs, on_train_end
        self.batch_size, self.seed, self.prefix = batch_size, seed, prefix
        self.jsonl = jsonl
        self.evaluator_options = dict(evaluator_options, batch_size=network_batch_size or batch_size)
        self.evaluator: Evaluator | None = None
        self.result: EvalResult | None = None
        self._last_step: int | None = None  # the step last evaluated: never twice for one step

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.evaluator is None:
            options = dict(self.evaluator_options)
            # the strategy's device: the module itself is moved there only after this hook
            options.setdefault("device", trainer.strategy.root_device)
            # Lightning has initialised torch.distributed here, so an image reference is extracted collectively.
            self.evaluator = Evaluator(self.metrics, self.reference, **options)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step   # already counts the optimizer step of this batch
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module, hook="step")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.evaluate(trainer, pl_module, hook="epoch")

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end:
            self.evaluate(trainer, pl_module, hook="end")

    def evaluate(self, trainer, pl_module, *, hook: str = "step") -> EvalResult:
        """Draw the samples, compute the metrics, log them; collective: every process must call it.  ``hook``
        (``step``, ``epoch``, ``end``) says where it is called from, which decides how Lightning may log."""
        step = trainer.global_step
        if self._last_step == step and self.result is not None:
            return self.result  # e.g. a step that also ends an epoch: one evaluation per step
        if self.evaluator is None:
            raise BadInputError("FidkitCallback.evaluate before setup: add the callback to the Trainer")
        was_training = pl_module.training
        pl_module.eval()
        try:
            result = evaluate_generator(lambda seeds: self.sample_fn(pl_module, seeds), n=self.n_samples,
                                        batch_size=self.batch_size, seed=self.seed, evaluator=self.evaluator)
        finally:
            pl_module.train(was_training)
        self.result, self._last_step = result, step
        values = result.flat(prefix=self.prefix)
        if hook != "end":   # Lightning refuses self.log in on_train_end
            # callback_metrics: what ModelCheckpoint(monitor="fidkit/fid") and the progress bar read.  Every process
            # holds the same result, so there is nothing to reduce.
            pl_module.log_dict(values, logger=False, on_step=hook == "step", on_epoch=hook != "step",
                               sync_dist=False)
        if trainer.is_global_zero:
            # Straight to the loggers, at this step: through self.log they would wait for log_every_n_steps.
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)
                logger.save()
            if self.jsonl is not None:
                self._append(step, trainer.current_epoch, result)
        return result

    def _append(self, step: int, epoch: int, result: EvalResult) -> None:
        line = json.dumps({"step": step, "epoch": epoch, **result.to_dict()}) + "\n"
        old = b""
        if os.path.exists(self.jsonl):
            with open(self.jsonl, "rb") as f:
                old = f.read()
        with atomic_write(self.jsonl) as f:  # a crash mid-write leaves the earlier lines intact
            f.write(old + line.encode())
