"""Evaluation inside a training loop: a stateful evaluator that is correct on one process or many.

``Evaluator`` keeps what the requested metrics need and nothing more: streamed
statistics for FID and sFID (O(d^2) memory, whatever the number of samples) and
per-sample features only for the metrics that need them (KID, precision/recall,
IS), as float32 that spill to disk when large.  Images go through the same
checks and the same preprocessing as the offline API, so the same images give
the same numbers online and offline.

When ``torch.distributed`` is initialised (torchrun, Accelerate and Lightning
all do this), :meth:`Evaluator.compute` is collective: every process must call
it, the statistics of all processes are reduced exactly, kept features are
gathered (uneven counts are fine), and every process gets the same result.
Images are never gathered.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from fidkit.data.sources import to_uint8_nchw
from fidkit.engine import distributed as D
from fidkit.report.notes import emit
from fidkit.session import Session
from fidkit.engine.extract import Diagnostics, new_side_state, run_branches
from fidkit.engine.state import Side, SideState
from fidkit.errors import BadInputError
from fidkit.metrics.catalog import MetricOptions
from fidkit.report.examples import ExamplesRequest
from fidkit.report.result import EvalResult
from fidkit.request import RunKeywords, RunOptions, SourceLike, WeightsLike, preprocessing_argument, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

_FORMAT = "fidkit.Evaluator"
_FORMAT_VERSION = 2


class Evaluator:
    """Accumulates generated (and, without a reference file, real) images batch by batch.

    ``reference`` is anything :func:`fidkit.evaluate` accepts as its first
    argument: a statistics file or saved name (computed once, e.g. with
    ``fidkit stats``), a folder or archive, a tensor of images.  Image sources
    are run through the network once, here.  Without a reference, feed real
    images with ``update(images, real=True)``.

    Images are ``N x C x H x W`` tensors (any device) or ``N x H x W x C``
    numpy arrays, uint8 in [0, 255], or float with a declared ``value_range``
    ((0, 1), (-1, 1) or (0, 255)); floats are rounded to 8 bits as saving them
    as PNG would, so online and offline numbers agree.  For video metrics
    (``fvd``, ``features="i3d"`` or ``"videomae-v2"``) they are videos ``N x T x C x H x W`` (or
    ``N x C x T x H x W`` with ``layout="NCTHW"``), sampled as ``clip`` says
    (a :class:`~fidkit.data.video.ClipOptions` or dict).  ``batch_size`` bounds
    how many images go through the network at once (larger ``update`` batches
    are split).  ``distributed`` is ``None`` (combine processes whenever a
    ``torch.distributed`` group is initialised), ``True`` or ``False``.  The
    remaining keywords are those of :func:`fidkit.evaluate` (``preprocessing``,
    ``weights``, ``device``, ``force``, and metric options such as
    ``kid_subsets`` or ``bootstrap``).
    """

    def __init__(self, metrics: str | Iterable[str] | None = None, reference: SourceLike = None, *,
                 features: str | Iterable[str] | None = None,
                 preprocessing: str | Mapping[str, str] | None = None, mode: str | Mapping[str, str] | None = None,
                 weights: WeightsLike = None, force: bool = False, distributed: bool | None = None, group=None,
                 options: MetricOptions | None = None, run: RunOptions | None = None,
                 keep_examples: int | None = None, **keywords: Unpack[RunKeywords]):
        keywords.setdefault("batch_size", 64)
        if "distributed" in keywords:
            raise BadInputError("distributed is the Evaluator's own argument")
        run, overrides = RunOptions.split(run, keywords)
        request = resolve(metrics, features, preprocessing_argument(preprocessing, mode, "Evaluator"),
                          weights=weights, options=options, run=run,
                          sources=() if reference is None else (reference,), force=force, **overrides)
        self.options = request.options
        self.value_range, self.batch_size, self.force = run.value_range, run.batch_size, force
        self._distributed, self._group = distributed, group
        self.modality = request.modality
        self.layout = run.layout
        source = request.sources[0] if request.sources else None
        self._session = Session(request)
        plan = self._session.plan
        # per-sample views (before the sides are built: they add kept features); thumbnails of the first
        # max(K, 1024) generated images fed to update, the reference's read again by index
        self._views = None if keep_examples is None else ExamplesRequest(keep_examples, plan, source, None)
        self.metrics = plan.metric_names
        self.mode = self._session.mode
        self._fake_branches = self._session.branches(plan.fake)
        self._fake = new_side_state(self._fake_branches, plan.fake.spaces("stream"), plan.fake.spaces("keep"),
                                    "generated images (update)")
        self._noun = "videos" if self.modality == "video" else "images"
        self._diagnostics = {False: Diagnostics(f"the generated {self._noun}", self._noun),
                             True: Diagnostics(f"the real {self._noun}", self._noun)}
        self._reference_notes: list[str] = []
        if source is None:
            self._real_branches = self._session.branches(plan.real)
            self._real = new_side_state(self._real_branches, plan.real.spaces("stream"), plan.real.spaces("keep"),
                                        "real images (update)")
            self._reference = None
        else:
            self._reference_notes.extend(request.check_comparable(source, None))   # once, before the pass
            self._real = None
            extraction = dict(run.extraction(), distributed=self._combine())
            self._reference = self._session.side(source, "reference", plan.real, extraction, self._reference_notes)

    # feeding ---------------------------------------------------------------------
    def update(self, images, real: bool = False) -> None:
        """Add a batch of generated images (or real ones, with ``real=True`` and no reference)."""
        self._update(images, real, None)

    def _update(self, images, real: bool, indices) -> None:
        if real and self._reference is not None:
            raise BadInputError(f"this evaluator compares against a fixed reference ({self._reference.description}); "
                                "update(real=True) is for evaluators built without reference=")
        side = self._real if real else self._fake
        branches = self._real_branches if real else self._fake_branches
        diagnostics = self._diagnostics[real]
        where = f"update({'real' if real else 'generated'} batch {diagnostics.batches})"
        if self.modality == "video":
            from fidkit.data.video import video_batch_to_uint8
            u8, tags = video_batch_to_uint8(images, where, self.value_range, self.layout, self._session.clip)
        else:
            u8, tags = to_uint8_nchw(images, where, self.value_range)
        n = u8.shape[0]
        diagnostics.add(where, tags, count=n)
        diagnostics.batches += 1
        if indices is not None and len(indices) != n:
            raise BadInputError(f"{where}: {n} images for {len(indices)} sample indices")
        if self._views is not None and not real:
            self._views.pool.feed(u8, side.n)
        for lo in range(0, n, self.batch_size):
            part = slice(lo, min(n, lo + self.batch_size))
            prepared = [b.preprocessing.prepare_many(u8[part].to(b.extractor.device)) for b in branches]
            feats = run_branches(branches, prepared, side) if side.spaces else {}
            side.add(feats, part.stop - part.start, None if indices is None else indices[part])

    # results ---------------------------------------------------------------------
    def _combine(self) -> bool:
        wanted = self._distributed if self._distributed is not None else True
        return bool(wanted) and D.is_distributed(self._group)

    def compute(self) -> EvalResult:
        """Every requested metric over everything added so far (on all processes: collective when distributed)."""
        start = time.perf_counter()
        combine = self._combine()
        notes = list(self._reference_notes)
        fake = self._side(self._fake, "generated images (update)", combine, notes, False)
        if self._reference is not None:
            real = self._reference
        else:
            real = self._side(self._real, "real images (update)", combine, notes, True)
        return self._result(real, fake, notes, start)

    def _result(self, real: Side, fake: Side, notes: list[str], start: float) -> EvalResult:
        """The metrics of two accumulated sides (also what :class:`fidkit.torchmetric.FidkitMetric` computes from
        the states torchmetrics synchronised)."""
        if fake.n == 0:
            raise BadInputError("no generated images yet: call update(images) before compute()")
        if real.n == 0:
            raise BadInputError("no real images: build the evaluator with reference=... or call "
                                "update(images, real=True)")
        values = self._session.values(real, fake, notes)
        result = self._session.result(values, real, fake, True, notes, start)
        if self._views is not None:
            result.examples = self._views.build(real, fake, pr_k=self.options.pr_k, seed=self.options.seed)
        emit(result.warnings)
        return result

    def _side(self, state: SideState, description: str, combine: bool, notes: list[str], real: bool) -> Side:
        n, stats, features = state.combined(combine, self._group)
        diagnostics = copy.deepcopy(self._diagnostics[real])
        if combine:
            diagnostics.combine(self._group)
        notes.extend(diagnostics.messages(n))
        return Side(description, stats, features, n)

    def reset(self, real: bool = False) -> None:
        """Forget the generated images (and, with ``real=True``, real images given to ``update``).

        A reference given at construction is never forgotten.
        """
        self._fake.reset()
        if self._views is not None:
            self._views.pool.thumbs.clear()
        self._diagnostics[False] = Diagnostics(f"the generated {self._noun}", self._noun)
        if real and self._real is not None:
            self._real.reset()
            self._diagnostics[True] = Diagnostics(f"the real {self._noun}", self._noun)

    @property
    def n(self) -> int:
        """Generated images added on this process since the last reset."""
        return self._fake.n

    # checkpoints -----------------------------------------------------------------
    def _identity(self) -> dict:
        plan = self._session.plan
        return {"metrics": list(self.metrics), "tasks": [f"{t.metric.name}@{t.space}" for t in plan.tasks],
                "mode": dict(plan.preprocessing),
                "weights_sha256": {n: self._session.extractor(n).weights_sha256 for n in plan.extractors},
                "options": self.options.to_dict([t.metric for t in plan.tasks]),
                "clip": None if self._session.clip is None else self._session.clip.describe()}

    def state_dict(self) -> dict:
        """This process's accumulated state: tensors and plain values (``torch.save`` it; load with
        ``torch.load(path, weights_only=True)``).  In a distributed job each process saves its own."""
        return {
            "format": _FORMAT, "version": _FORMAT_VERSION, **self._identity(),
            "fake": self._fake.state_dict(), "real": None if self._real is None else self._real.state_dict(),
            "diagnostics": {str(k): d.state() for k, d in self._diagnostics.items()},
        }

    def save(self, path) -> None:
        """Write :meth:`state_dict` to ``path`` (atomically; read it back with :meth:`load`)."""
        from fidkit._io import atomic_write
        with atomic_write(path) as f:
            torch.save(self.state_dict(), f)

    def load(self, path) -> None:
        """Resume from a file written by :meth:`save` (or ``torch.save(state_dict())``); errors name the file."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (torch raises many kinds for a damaged file)
            raise BadInputError(f"{path}: not a readable Evaluator state ({type(e).__name__}: {e})") from None
        self.load_state_dict(state, source=str(path))

    def load_state_dict(self, state: dict, source: str | None = None) -> None:
        """Resume from :meth:`state_dict`; refuses a state made with other metrics, mode, weights or options, and
        one that contradicts itself (sample counts against kept features, indices and moments).  ``source`` (the
        file it was read from) is named in errors."""
        where = f"{source}: the evaluator state" if source else "the saved evaluator state"
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise BadInputError(f"{source + ': ' if source else ''}not an Evaluator state dict "
                                "(no 'format': 'fidkit.Evaluator')")
        if state.get("version") != _FORMAT_VERSION:
            raise BadInputError(f"{where} has version {state.get('version')}, which is not supported "
                                f"(this fidkit reads version {_FORMAT_VERSION})")
        mine = self._identity()
        for key, value in mine.items():
            if state.get(key) != value:
                raise BadInputError(f"{where} has {key}={state.get(key)!r}, this evaluator "
                                    f"{value!r}: results would mix incomparable features or settings")
        if (state.get("real") is None) != (self._real is None):
            raise BadInputError(f"{where} was made " + ("with" if state.get("real") is None else "without") +
                                " a reference file; build the evaluator the same way to resume it")
        # Load into new objects and swap only when everything loaded: a refused state leaves this evaluator as it was.
        fake = self._fake.empty_like()
        real = None if self._real is None else self._real.empty_like()
        try:
            fake.load_state_dict(state["fake"], f"{where}'s generated side")
            if real is not None:
                real.load_state_dict(state["real"], f"{where}'s real side")
            diagnostics = {key: Diagnostics(d.description, d.noun) for key, d in self._diagnostics.items()}
            for key, d in diagnostics.items():
                d.load_state(state.get("diagnostics", {}).get(str(key), {}))
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            if isinstance(e, BadInputError):
                raise
            raise BadInputError(f"{where} is malformed ({type(e).__name__}: {e})") from None
        self._fake, self._real, self._diagnostics = fake, real, diagnostics

    def __repr__(self) -> str:
        ref = self._reference.description if self._reference is not None else f"{self._real.n} real images"
        return (f"Evaluator(metrics={list(self.metrics)}, mode={self.mode!r}, reference={ref!r}, "
                f"generated={self._fake.n})")


# -- evaluating a generator ------------------------------------------------------------

_MIX1, _MIX2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, indices) -> torch.Tensor:
    """The per-sample seeds :func:`evaluate_generator` hands to ``sample_fn``: sample ``i`` of a run with
    ``seed`` always gets the same 63-bit seed, whatever the batch or process it lands in."""
    idx = np.asarray(indices, dtype=np.int64)
    if (idx < 0).any():
        raise BadInputError("sample indices must be non-negative")
    with np.errstate(over="ignore"):
        base = _splitmix64(np.asarray([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
        mixed = _splitmix64(base + idx.astype(np.uint64))
    return torch.from_numpy((mixed >> np.uint64(1)).astype(np.int64))


def seeded_randn(seeds, *shape: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """One standard-normal tensor of ``shape`` per seed, stacked: ``len(seeds) x *shape``.

    Each sample's noise depends on its seed only, so a generator evaluated with
    :func:`evaluate_generator` sees the same latents at any batch size or
    process count.
    """
    out = torch.empty((len(seeds),) + tuple(shape), dtype=dtype)
    g = torch.Generator()
    for i, s in enumerate(torch.as_tensor(seeds).tolist()):
        g.manual_seed(int(s))
        out[i] = torch.randn(shape, generator=g, dtype=dtype)
    return out.to(device) if device is not None else out


def evaluate_generator(sample_fn: Callable[[torch.Tensor], object], n: int = 5000, *, batch_size: int = 64,
                       reference=None, seed: int = 0, evaluator: Evaluator | None = None, progress: bool = False,
                       **evaluator_kwargs) -> EvalResult:
    """Draw exactly ``n`` samples from ``sample_fn`` and evaluate them against ``reference``.

    ``sample_fn(seeds)`` gets a 1-D int64 tensor of per-sample seeds (see
    :func:`sample_seeds`; :func:`seeded_randn` turns them into latents) and
    returns that many images, as :meth:`Evaluator.update` takes them.  It runs
    under ``torch.inference_mode``.  When ``torch.distributed`` is initialised,
    every process must call this: process ``r`` of ``w`` draws the samples
    ``[r n / w, (r + 1) n / w)``, none twice, none missing, and every process
    returns the result for all ``n``.  Because seeds depend on the sample index
    only, the result does not depend on ``batch_size`` or on the number of
    processes.  Pass ``evaluator=`` to reuse one (its generated side is reset
    first; its reference is kept), else the keywords build one.
    """
    if n < 1:
        raise BadInputError(f"n must be at least 1, got {n}")
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    if evaluator is None:
        if reference is None:
            raise BadInputError("evaluate_generator needs reference= (statistics file or name, folder, ...) or "
                                "evaluator=")
        evaluator = Evaluator(reference=reference, **evaluator_kwargs)
    elif reference is not None or evaluator_kwargs:
        raise BadInputError("give either evaluator= or reference= and evaluator options, not both")
    evaluator.reset()
    rank, world = D.rank_and_world(evaluator._group) if evaluator._combine() else (0, 1)
    lo, hi = rank * n // world, (rank + 1) * n // world
    with tqdm(total=hi - lo, unit="img", desc="sampling", disable=not progress or rank != 0, leave=False) as bar:
        for start in range(lo, hi, batch_size):
            idx = np.arange(start, min(start + batch_size, hi))
            with torch.inference_mode():
                images = sample_fn(sample_seeds(seed, idx))
            got = len(images)
            if got != len(idx):
                raise BadInputError(f"sample_fn returned {got} images for {len(idx)} seeds")
            evaluator._update(images, False, idx)
            bar.update(len(idx))
    return evaluator.compute()
