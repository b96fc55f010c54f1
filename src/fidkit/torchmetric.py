"""fidkit's metrics as a ``torchmetrics.Metric``: ``self.log("val/fid", metric)`` in Lightning just works.

:class:`FidkitMetric` runs images through an :class:`~fidkit.Evaluator` (same checks, preprocessing, networks and
metrics as everywhere else in fidkit) and keeps what it accumulates as torchmetrics states, declared with
``add_state`` so that torchmetrics' own synchronisation combines processes:

- a streamed feature space (Fréchet distances) is a count, a sum of features and a sum of outer products, all
  ``dist_reduce_fx="sum"``, in float64 (the mean and co-moment follow from them at ``compute``; with features of
  magnitude O(1) the subtraction loses about ``|mean|² / variance`` ulps, far below float32 feature noise);
- a kept feature space (KID, precision/recall, IS, CMMD, ...) is a list of float32 rows, ``dist_reduce_fx="cat"``:
  rows come back in rank order, as the Evaluator orders rows of unknown index;
- the sample count of each side is an int64 sum.

``compute()`` hands the synchronised states to the Evaluator's own metric code, so its values equal a single
:class:`~fidkit.Evaluator` fed every process's images in rank order.  torchmetrics is an optional extra
(``pip install 'fidkit[torchmetrics]'``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import torch

from fidkit._optional import require
from fidkit.engine.state import Side, SideState
from fidkit.errors import BadInputError
from fidkit.evaluator import Evaluator
from fidkit.metrics.catalog import MetricOptions
from fidkit.report.notes import emit
from fidkit.report.result import EvalResult
from fidkit.request import RunKeywords, RunOptions, SourceLike, WeightsLike
from fidkit.stats.moments import FeatureStats

if TYPE_CHECKING:
    from typing_extensions import Unpack

torchmetrics = require("torchmetrics", "torchmetrics", "fidkit.torchmetric")
from torchmetrics.utilities import dim_zero_cat  # noqa: E402  (after the check that names the extra)


class FidkitMetric(torchmetrics.Metric):
    """Any fidkit metrics in any feature space, as one ``torchmetrics.Metric``.

    ``metrics``, ``reference``, ``features`` and the keywords (``weights``, ``preprocessing``, ``device``,
    ``batch_size``, ``value_range``, ``kid_subsets``, ...) are those of :class:`~fidkit.Evaluator`.  Prefer a
    statistics file as ``reference``: an image source is extracted by every process in full (this object combines
    only its own states).  Without a reference, feed real images with ``update(images, real=True)``.

    ``compute()`` returns a dict of float64 0-d tensors (:meth:`EvalResult.flat`, keys prefixed with
    ``prefix``), or, with ``value="fid"`` (any key of the result), that one tensor: what ``self.log(name,
    metric)`` needs.  The full :class:`~fidkit.report.result.EvalResult` of the last ``compute()`` is
    :attr:`result`.  ``metric_options`` go to ``torchmetrics.Metric`` (``sync_on_compute``, ``process_group``,
    ...).  Call ``update``, not ``metric(images)``: a metric of one batch means nothing here, so ``forward`` only
    updates.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, metrics: str | Iterable[str] | None = None, reference: SourceLike = None, *,
                 features: str | Iterable[str] | None = None, value: str | None = None, prefix: str = "",
                 preprocessing: str | Mapping[str, str] | None = None, weights: WeightsLike = None,
                 force: bool = False, options: MetricOptions | None = None, run: RunOptions | None = None,
                 metric_options: Mapping[str, Any] | None = None, **keywords: Unpack[RunKeywords]):
        super().__init__(**dict(metric_options or {}))
        # The Evaluator extracts and checks; it never combines processes itself: torchmetrics does.
        self._evaluator_args = dict(metrics=metrics, reference=reference, features=features,
                                    preprocessing=preprocessing, weights=weights, force=force, distributed=False,
                                    options=options, run=run, **keywords)
        self._evaluator: Evaluator | None = Evaluator(**self._evaluator_args)
        self.value, self.prefix = value, prefix
        self.result: EvalResult | None = None
        self._seen = {"fake": 0, "real": 0}  # images this process was given (for its conversion notes)
        sides = {"fake": self.evaluator._fake}
        if self.evaluator._real is not None:
            sides["real"] = self.evaluator._real
        #: per side, per feature space: the names of its states
        self._names: dict[str, dict[str, dict[str, str]]] = {}
        for side, state in sides.items():
            names = self._names[side] = {}
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
            for i, space in enumerate(state.stream):
                d = state.stats[space].dim
                names[space] = {"n": f"{side}_n{i}", "sum": f"{side}_sum{i}", "outer": f"{side}_outer{i}"}
                self.add_state(f"{side}_n{i}", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
                self.add_state(f"{side}_sum{i}", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
                self.add_state(f"{side}_outer{i}", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            for i, space in enumerate(state.keep):
                names.setdefault(space, {})["rows"] = f"{side}_rows{i}"
                self.add_state(f"{side}_rows{i}", [], dist_reduce_fx="cat")

    @property
    def evaluator(self) -> Evaluator:
        """The :class:`~fidkit.Evaluator` that extracts features (rebuilt after unpickling)."""
        if self._evaluator is None:
            self._evaluator = Evaluator(**self._evaluator_args)
        return self._evaluator

    def __getstate__(self) -> dict[str, Any]:
        # Networks (and a custom extractor's closures) do not travel to processes Lightning or torch.multiprocessing
        # spawn: the states and the construction arguments do, and each process builds its own Evaluator (its
        # registered networks and weights files must be there, as for any fidkit process).
        return {**super().__getstate__(), "_evaluator": None}

    # feeding -------------------------------------------------------------------------
    def update(self, images, real: bool = False) -> None:  # type: ignore[override]
        """Add a batch of generated images (or real ones, with ``real=True`` and no reference), as
        :meth:`Evaluator.update <fidkit.Evaluator.update>` takes them."""
        ev = self.evaluator
        ev.update(images, real=real)  # errors (and a reference with real=True) are the Evaluator's
        state: SideState = ev._real if real else ev._fake
        self._seen["real" if real else "fake"] += state.n
        self._fold(("real" if real else "fake"), state)
        state.reset()  # the Evaluator only extracts; what it saw now lives in the states above

    def _fold(self, side: str, state: SideState) -> None:
        names = self._names[side]
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + state.n)
        for space, stats in state.stats.items():
            mean = torch.from_numpy(stats.mean)
            outer = torch.from_numpy(stats._m2) + stats.n * torch.outer(mean, mean)  # co-moment -> raw sum
            for key, add in (("n", torch.tensor(stats.n)), ("sum", mean * stats.n), ("outer", outer)):
                name = names[space][key]
                setattr(self, name, getattr(self, name) + add.to(self.device))
        for space, store in state.stores.items():
            getattr(self, names[space]["rows"]).append(torch.from_numpy(np.array(store.array(), np.float32))
                                                       .to(self.device))

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """Only :meth:`update`: the metrics of a single batch are not worth a network pass of their own."""
        self.update(*args, **kwargs)

    # results -------------------------------------------------------------------------
    def compute(self) -> dict[str, torch.Tensor] | torch.Tensor:
        start = time.perf_counter()
        ev = self.evaluator
        # conversion notes (JPEG samples, odd sizes, ...) are this process's, out of the images it was given
        notes = list(ev._reference_notes) + ev._diagnostics[False].messages(self._seen["fake"])
        if ev._reference is None:
            notes += ev._diagnostics[True].messages(self._seen["real"])
        fake = self._side("fake", ev._fake, "generated images (update)")
        real = ev._reference if ev._reference is not None else self._side("real", ev._real, "real images (update)")
        self.result = result = ev._result(real, fake, notes, start)
        flat = result.flat(prefix=self.prefix)
        as_tensors = {k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in flat.items()}
        if self.value is None:
            return as_tensors
        key = self.prefix + self.value
        if key not in as_tensors:
            raise BadInputError(f"FidkitMetric(value={self.value!r}): the result has no scalar {self.value!r}; "
                                f"it has {sorted(k[len(self.prefix):] for k in flat)}")
        return as_tensors[key]

    def _side(self, side: str, state: SideState, description: str) -> Side:
        """One side from the (synchronised) states: statistics from the sums, rows concatenated."""
        names = self._names[side]
        n = int(getattr(self, f"{side}_count"))
        stats, features = {}, {}
        for space in state.stream:
            count = int(getattr(self, names[space]["n"]))
            total = getattr(self, names[space]["sum"]).detach().cpu().numpy()
            outer = getattr(self, names[space]["outer"]).detach().cpu().numpy()
            mean = total / max(count, 1)
            m2 = outer - count * np.outer(mean, mean)
            stats[space] = FeatureStats(count, mean, (m2 + m2.T) / 2, state.stats[space].provenance)
        for space in state.keep:
            rows = getattr(self, names[space]["rows"])
            rows = dim_zero_cat(rows) if not (isinstance(rows, list) and not rows) else torch.empty(0)
            features[space] = rows.detach().cpu().numpy().reshape(-1, state.stores[space].dim)
        return Side(description, stats, features, n)

    def reset(self) -> None:
        """Forget every image added (the reference given at construction is kept)."""
        super().reset()
        self.evaluator.reset(real=True)
        self.result = None
        self._seen = {"fake": 0, "real": 0}
