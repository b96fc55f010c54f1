"""``fidkit`` command line: parses arguments, calls the API, prints.

Exit status: 0 success, 2 bad input or usage, 3 incomparable statistics,
4 weights or published statistics unavailable, 5 result printed but not written.
"""

from __future__ import annotations

import argparse
import codecs
import fnmatch
import json
import os
import sys
import warnings
from pathlib import Path

from fidkit._version import __version__
from fidkit.adm import ADM_LINES, adm_evaluate
from fidkit.api import DEFAULT_METRICS, compute_reference, evaluate
from fidkit.metrics.catalog import declared_options
from fidkit._io import append_log as _append_log
from fidkit._io import check_output as _check_target
from fidkit._io import write_target
from fidkit.report import text
from fidkit.cache import checkpoints_dir, named_stats_path
from fidkit.data.sources import VALUE_RANGES
from fidkit.errors import (BadInputError, FidkitError, FidkitWarning, IncomparableStatsError, OutputError,
                           ReferenceUnavailableError, WeightsUnavailableError)
from fidkit.extractors import specs
from fidkit.stats.published import FORMATS, convert_published
from fidkit.registry import cache_path, cached, close_names, lookup, raise_unknown, references
from fidkit.registry import fetch as registry_fetch
from fidkit.registry.listing import entry_lines, table_lines
from fidkit.protocols import PROTOCOLS
from fidkit.stats.reference import npz_path

EXIT_CODES = {BadInputError: 2, IncomparableStatsError: 3, WeightsUnavailableError: 4, ReferenceUnavailableError: 4,
              OutputError: 5}


def _value_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI such as 0,1 or -1,1; got {text!r}") from None
    if (lo, hi) not in VALUE_RANGES:  # checked now, not at the first float image
        raise argparse.ArgumentTypeError(f"{text!r}: use 0,1 or -1,1 or 0,255")
    return lo, hi


def _weights(text: str):
    """``PATH`` or ``EXT=PATH,EXT=PATH``.  A path that exists is a path, even when it contains ``=`` or ``,``;
    otherwise each ``,`` piece with an ``=`` starts a pair, and a piece without one continues the previous path."""
    if "=" not in text or os.path.exists(os.path.expanduser(text)):
        return text
    pairs: list[list[str]] = []
    for part in text.split(","):
        if "=" in part and not (pairs and os.path.exists(os.path.expanduser(f"{pairs[-1][1]},{part}"))):
            pairs.append(part.split("=", 1))
        elif pairs:
            pairs[-1][1] += f",{part}"
        else:
            raise argparse.ArgumentTypeError(f"{text!r} is neither an existing file nor EXT=PATH pairs")
    for ext, path in pairs:
        if not ext or not path:
            raise argparse.ArgumentTypeError(f"{text!r}: each pair must be EXT=PATH (got {ext}={path})")
    return {ext: path for ext, path in pairs}


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {v}")
    return v


def _common(p: argparse.ArgumentParser, comparison: bool = False) -> None:
    variants = "; ".join(f"{s.name}: {', '.join(p.name for p in s.preprocessing)} (default {s.default_preprocessing})"
                         for s in specs())
    p.add_argument("--preprocessing", "--mode", dest="preprocessing", default=None, metavar="NAME|EXT=NAME,...",
                   help="preprocessing: a name (tf, clean, pytorch for Inception) or EXT=NAME pairs "
                        f"({variants}). Defaults to what given statistics record, else each network's default. "
                        "--mode is its older name.")
    p.add_argument("--weights", metavar="PATH|EXT=PATH,...", type=_weights,
                   help="weight file of the Inception network, or EXT=PATH pairs for others (else the "
                        "network's environment variable, the cache, or a download). A file that exists is read "
                        "as a path even if its name holds '=' or ','")
    p.add_argument("--crop", choices=["center"], default=None,
                   help="centre-crop every image to a square before the resize (non-square images are otherwise "
                        "stretched by squashing resizes); recorded in the statistics")
    p.add_argument("--batch-size", type=_positive, default=32, help="images per network batch (default 32)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--workers", type=_positive, default=None, help="decoding threads (default: min(4, cores))")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="use only the first N images")
    p.add_argument("--value-range", type=_value_range, default=None, metavar="LO,HI",
                   help="value range of float image arrays (0,1 or -1,1 or 0,255)")
    p.add_argument("--clip-length", type=_positive, default=None, metavar="T",
                   help="video networks (fvd; i3d, videomae-v2): frames per clip (default 16)")
    p.add_argument("--frame-stride", type=_positive, default=None, metavar="S",
                   help="video networks: take every S-th frame (default 1)")
    p.add_argument("--clip-start", type=_non_negative, default=None, metavar="F",
                   help="video networks: first frame of the clip, counted from 0 (default 0); a video with fewer "
                        "than F + (T-1) S + 1 frames is an error naming it")
    p.add_argument("--image-column", default=None, metavar="NAME",
                   help="Parquet/Arrow sources: the column of encoded images (default: the Hugging Face 'image' "
                        "struct, else the only binary column); WebDataset tars: the image extension of each sample")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave unreadable image files out (each is named in the warnings and in the JSON/log "
                        "record) instead of stopping at the first")
    p.add_argument("--protocol", default=None, metavar="NAME",
                   help="follow a published protocol's card (" + ", ".join(PROTOCOLS) + "; 'fidkit protocols' "
                        "describes each): its networks, preprocessing, metrics and options apply unless given "
                        "here; the result's verdict says whether it is comparable with that protocol's numbers")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no warnings on stderr")
    if comparison:
        p.add_argument("--restart", action="store_true",
                       help="discard the saved progress of an interrupted run with the same sources, start over")
        p.add_argument("--force", action="store_true", help="compare statistics even if their provenance differs")
        p.add_argument("--log", metavar="FILE", help="append one JSON line per run to FILE")
        p.add_argument("--sha256", metavar="HEX|NAME=HEX,...", default=None,
                       help="the sha256 a published reference's file must have (the side that is a registry "
                            "name, or NAME=HEX pairs); else the sha256 recorded at its first download is checked")


_KEEP = object()  # `fidkit stats --features` without a value: the old spelling of --keep-features


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fidkit", description="FID and friends for generative models.",
        epilog="Under 'torchrun --nproc_per_node K -m fidkit ...' each process extracts every K-th image and "
               "rank 0 prints the combined result.")
    parser.add_argument("--version", action="version", version=f"fidkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fid", help="Fréchet Inception Distance between two sources",
                       description="Each SOURCE is a folder of images, a .zip/.tar of images, a .npz/.npy "
                                   "(uint8 NHWC images, N x d features, or mu/sigma statistics), a statistics "
                                   "file from 'fidkit stats', or a name saved with 'fidkit stats --name'.")
    p.add_argument("a", metavar="REAL")
    p.add_argument("b", metavar="FAKE")
    _common(p, comparison=True)

    p = sub.add_parser("eval", help="several metrics (FID, KID, IS, sFID, precision/recall, ...) from one pass",
                       description="Metrics of FAKE against REAL from one network pass per image. Sources as for "
                                   "'fidkit fid'; a REAL statistics file must hold what the metrics need "
                                   "('fidkit stats --keep-features' adds per-sample features for KID and P/R).")
    p.add_argument("a", metavar="REAL")
    p.add_argument("b", metavar="FAKE")
    p.add_argument("--metrics", default=None,
                   help="comma-separated: fid (= fd), kid (= kd), is, sfid, prdc (= pr,dc), pr, dc, fid_inf, is_inf, "
                        "noise_floor, cmmd, fvd and kvd (videos, I3D), fd_videomae, fd_dinov2-style names for one "
                        "feature space, or all "
                        f"(default {','.join(DEFAULT_METRICS)}, those that apply to --features)")
    p.add_argument("--features", "--extractors", dest="features", default=None, metavar="EXT,...",
                   help="feature extractors the generic metrics run in, each image decoded once for all: "
                        + ", ".join(s.name for s in specs()) + " (default inception)")
    for option in declared_options().values():  # each metric's declared options, and the common ones
        p.add_argument(option.flag, dest=option.name, type=option.type, default=None,
                       metavar="N" if option.type is int else "X",
                       help=f"{option.help} (default {option.default:g})")
    p.add_argument("--report", metavar="FILE.html", default=None,
                   help="also write this run's report: one offline HTML page and a FILE.json sidecar (see 'fidkit "
                        "report'; needs the report extra)")
    p.add_argument("--keep-examples", type=_positive, default=None, metavar="K",
                   help="add per-sample views to the result (--json): K sample thumbnails, the K most and least "
                        "realistic, the K closest to a reference image (near copies flagged), the top directions "
                        "of the covariance difference")
    _common(p, comparison=True)

    p = sub.add_parser("compare", help="A/B of two results (fidkit eval --json): which differences exceed the noise",
                       description="Per metric shared by A and B: the difference, and whether it exceeds the "
                                   "bootstrap intervals (--bootstrap N) and the noise floor (the noise_floor "
                                   "metric). Results of other feature spaces or references are refused.")
    p.add_argument("result_a", metavar="A.json", help="a result of 'fidkit eval --json' (a --log file: its last line)")
    p.add_argument("result_b", metavar="B.json")
    p.add_argument("--force", action="store_true", help="compare results of different feature spaces or references")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("stats", help="precompute reference statistics of a source")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("-o", "--output", metavar="FILE.npz",
                   help="where to write the statistics (.npz is added when missing; a symbolic link is followed "
                        "and the file it names replaced; folders, devices and fifos are refused)")
    p.add_argument("--name", help="save in the cache under NAME, usable later in place of a path")
    p.add_argument("--keep-features", action="store_true",
                   help="also store per-sample embeddings (float32; 8 KB per image for Inception) for KID, "
                        "precision/recall, CMMD and the noise floor")
    p.add_argument("--restart", action="store_true",
                   help="ignore (and delete) the checkpoint of an interrupted run of this command, start over")
    p.add_argument("--extractors", default=None, metavar="EXT,...", help="the older name of --features EXT,...")
    p.add_argument("--partial", action="store_true",
                   help="write SOURCE's partial statistics (one shard of a larger set: counts, exact co-moments, "
                        "kept features, the shard's fingerprint) for 'fidkit merge'; a rerun whose -o already "
                        "holds this shard's partial with the same content and settings is skipped")
    p.add_argument("--features", dest="features", nargs="?", const=_KEEP, default=None, metavar="EXT,...",
                   help="feature extractors to compute statistics for, from one decode: "
                        + ", ".join(s.name for s in specs()) + " (default inception), as 'fidkit eval --features'. "
                        "Without a value: --keep-features (its meaning before fidkit 0.2, deprecated)")
    _common(p)

    _merge_parser(sub)
    sub.add_parser("extractors", help="list the feature extractors, their taps, preprocessing and weight files")
    _convert_parser(sub)

    p = sub.add_parser("refs", help="list the published reference statistics usable by name",
                       description="Published reference statistics: what each holds, how it was made, its URL and "
                                   "licence, and whether it is in the cache with the sha256 recorded at first use.")
    p.add_argument("name", nargs="?", metavar="NAME|PATTERN",
                   help="one entry in full, or a shell pattern (imagenet*) to list some")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("adm", help="ADM's evaluator (guided-diffusion evaluations/evaluator.py REF SAMPLE)",
                       description="What 'python evaluator.py REF_BATCH SAMPLE_BATCH' prints (Inception Score, FID, "
                                   "sFID, Precision, Recall), computed as that script computes them, without "
                                   "TensorFlow. Both are ADM .npz batches (arr_0: uint8 N x H x W x 3); the "
                                   "reference batch's mu/sigma/mu_s/sigma_s serve FID/sFID. Precision/recall "
                                   "emulate ADM's float16 distances; their float64 definition is printed after.")
    p.add_argument("ref_batch", metavar="REF_BATCH")
    p.add_argument("sample_batch", metavar="SAMPLE_BATCH")
    p.add_argument("--weights", metavar="PATH", help="FID Inception weight file (else $FIDKIT_INCEPTION_WEIGHTS, "
                                                     "the cache, or a download)")
    p.add_argument("--batch-size", type=_positive, default=64, help="images per network batch (default 64, ADM's)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--workers", type=_positive, default=None, help="decoding threads (default: min(4, cores))")
    p.add_argument("--limit", type=_positive, default=None, metavar="N",
                   help="use only the first N images of each batch")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no warnings on stderr")
    p.add_argument("--log", metavar="FILE", help="append one JSON line per run to FILE")
    p = sub.add_parser("protocols", help="list the published protocols' cards (--protocol NAME)")
    p.add_argument("name", nargs="?", default=None, help="describe one card")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    _report_parsers(sub)
    return parser


def _report_parsers(sub) -> None:
    runs_help = ("JSON results (--json output) and JSONL logs (--log), in order; a log is one series of checkpoints "
                 "(x: its 'step' keys, else 'name', else the order of its lines)")
    p = sub.add_parser("report", help="one offline HTML page of results and logs (curves, FD terms, fidelity vs "
                                      "diversity, FD vs N, samples, provenance, A/B)",
                       description="Writes one self-contained HTML page (plotly.js inlined: no network) and a JSON "
                                   "sidecar with every figure's data. Needs the report extra.")
    p.add_argument("runs", nargs="+", metavar="RUN", help=runs_help)
    p.add_argument("-o", "--output", default="report.html", metavar="FILE.html",
                   help="the page (default report.html); its data goes beside it as FILE.json")
    p.add_argument("--ab", nargs=2, metavar=("A", "B"), default=None,
                   help="compare these two results (files; a log's last line); default: the two results when "
                        "exactly two are given")
    p.add_argument("--title", default="fidkit report", help="the page's title")
    p.add_argument("--png", metavar="DIR", default=None, help="also write every figure into DIR (plot extra)")
    p.add_argument("--format", choices=("png", "svg"), default="png", help="image format of --png (default png)")
    p = sub.add_parser("plot", help="the report's figures as PNG or SVG files (matplotlib)",
                       description="Writes every figure of 'fidkit report' into DIR. Needs the plot extra.")
    p.add_argument("runs", nargs="+", metavar="RUN", help=runs_help)
    p.add_argument("--png", metavar="DIR", required=True, help="folder of the figure files (created)")
    p.add_argument("--format", choices=("png", "svg"), default="png", help="image format (default png)")
    p.add_argument("--ab", nargs=2, metavar=("A", "B"), default=None, help="as for 'fidkit report'")


def _ab_pair(args) -> tuple[dict, dict] | None:
    from fidkit.report.runs import read_results
    return None if not args.ab else (read_results(args.ab[0])[-1], read_results(args.ab[1])[-1])


def _run_report(args) -> int:
    from fidkit.report.html import require_plotly, write_report
    from fidkit.report.runs import load_series
    require_plotly()
    _check_target(args.output, "-o")
    series = load_series(args.runs)
    write_report(series, args.output, ab=_ab_pair(args), title=args.title)
    print(f"wrote {args.output}")
    if args.png:
        _run_plot(args, series)
    return 0


def _run_plot(args, series=None) -> int:
    from fidkit.report.figures import build_report
    from fidkit.report.png import write_figures
    from fidkit.report.runs import load_series
    series = load_series(args.runs) if series is None else series
    written = write_figures(build_report(series, ab=_ab_pair(args)), args.png, fmt=args.format)
    print(f"wrote {len(written)} figure(s) into {args.png}")
    return 0


def _run_protocols(args) -> int:
    from fidkit.protocols import protocol
    cards = [protocol(args.name)] if args.name else list(PROTOCOLS.values())
    if args.json:
        print(json.dumps([c.to_dict() for c in cards]))
        return 0
    for c in cards:
        aliases = f" (also: {', '.join(c.aliases)})" if c.aliases else ""
        print(f"{c.name}{aliases}: {c.title}")
        print(f"  metrics: {c.metrics}  features: {c.features}")
        for n in c.networks:
            ours = n.preprocessing or f"none in fidkit (nearest: {n.nearest})"
            print(f"  {n.extractor}: preprocessing {ours}: {n.publisher_preprocessing}; weights: {n.publisher_weights}")
        counts = f"N = {c.n_generated:,} generated" if c.n_generated else "N not fixed"
        if c.n_reference:
            counts += f", {c.n_reference:,} reference"
        print(f"  {counts}; covariance / {'(N - 1)' if c.normaliser == 'n-1' else 'N'}"
              + (f"; options: {', '.join(f'{k}={v}' for k, v in c.options)}" if c.options else "")
              + (f"; clip: {', '.join(f'{k} {v}' for k, v in c.clip)}" if c.clip else ""))
        print(f"  reference: {c.reference_note}" + (f" (registry: {', '.join(c.references)})" if c.references else ""))
        for line in ([c.reporting] if c.reporting else []) + list(c.unknown):
            print(f"  note: {line}")
        print(f"  sources: {'; '.join(c.sources)}")
    return 0


def _run_adm(args) -> int:
    _check_target(args.log, "--log")
    result = adm_evaluate(args.ref_batch, args.sample_batch, weights=args.weights, device=args.device,
                          batch_size=args.batch_size, workers=args.workers, limit=args.limit,
                          progress=not args.quiet and sys.stderr.isatty(), distributed=args.distributed)
    record = result.to_dict()
    if args.json:
        print(json.dumps(record))
    else:  # evaluator.py's lines, its wording and order, Python's float repr; then the float64 definition
        for label, key in ADM_LINES:
            print(f"{label}: {float(result[key])!r}")
        print(f"Precision (float64 definition): {float(result['adm_precision_f64'])!r}")
        print(f"Recall (float64 definition): {float(result['adm_recall_f64'])!r}")
        print("\n".join(text.verdict_lines(result)))  # after ADM's lines, so scripts that read those still do
    _print_warnings(result.warnings, args.quiet)
    _append_log(args.log, record)
    return 0


def _convert_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a published statistics file (EDM2 .pkl, cd-FVD .pkl, torch-fidelity "
                                       "cache, .pth, ...) into fidkit's no-pickle .npz",
                       description="Pickles are read with an allow-list (numpy arrays, tensors, containers) and "
                                   "never executed. Formats: " + "; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", dest="fmt", required=True, choices=sorted(FORMATS), metavar="FMT",
                   help="the publisher's layout: " + ", ".join(FORMATS))
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="where to write fidkit's .npz")
    p.add_argument("--normaliser", choices=("n-1", "n"), default="n-1",
                   help="what the file's covariance is divided by (default n-1, as np.cov); 'n' is converted "
                        "exactly with the file's N or --n")
    p.add_argument("--n", dest="n", type=_positive, default=None, help="the sample count, when the file has none")
    p.add_argument("--url", default=None, help="where the file was downloaded from (recorded in the output)")


def _run_convert(args) -> int:
    _check_target(args.output, "-o")
    out = convert_published(args.file, args.fmt, args.output, n=args.n, normaliser=args.normaliser, url=args.url)
    print(f"wrote {out} ({args.fmt} from {args.file})")
    return 0


def _run_extractors(args) -> int:
    for s in specs():
        aliases = f" (also: {', '.join(s.aliases)})" if s.aliases else ""
        kind = " [videos]" if s.modality == "video" else ""
        named = f"; metrics named {', '.join(f'{v} (= {k})' for k, v in s.metric_names.items())}" if s.metric_names \
            else ""
        print(f"{s.name}{aliases}{kind}: {s.summary}{named}")
        for tap in s.taps:
            print(f"  tap {tap.name}: {tap.dim}-d, {tap.role}" + (f" ({tap.summary})" if tap.summary else ""))
        for p in s.preprocessing:
            default = " [default]" if p.name == s.default_preprocessing else ""
            print(f"  preprocessing {p.name}{default}: {p.size} px; resize {p.resize or '-'}; crop {p.crop}; "
                  f"{p.normalization or '-'}")
        w = s.weights
        if w is not None:
            print(f"  weights {w.filename}: {w.url}\n    sha256 {w.sha256}; ${w.env_var}"
                  + (f"; licence {w.licence}" if w.licence else ""))
    return 0


def _options(args) -> dict:
    return dict(protocol=args.protocol,
                preprocessing=args.preprocessing, crop=args.crop, weights=args.weights, device=args.device, batch_size=args.batch_size,
                workers=args.workers, limit=args.limit, value_range=args.value_range, skip_bad=args.skip_bad,
                image_column=args.image_column, progress=not args.quiet and sys.stderr.isatty(), distributed=args.distributed, clip=_clip(args))


def _clip(args) -> dict | None:
    given = {k: v for k, v in (("length", args.clip_length), ("stride", args.frame_stride),
                               ("start", args.clip_start)) if v is not None}
    return given or None


def _resume(args) -> dict:
    """fid and eval keep their extraction progress in the cache; a rerun of an interrupted command continues."""
    return dict(checkpoint_dir=None if args.distributed else checkpoints_dir(), restart=args.restart)


def _start_distributed(args) -> bool:
    """Under ``torchrun --nproc_per_node K`` (WORLD_SIZE > 1): join the process group, pick this process's GPU.

    Each process then extracts every K-th image; results are combined exactly and
    only rank 0 prints and writes.  The launcher, not fidkit, starts the processes.
    """
    args.distributed = False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist
    if not dist.is_available():
        raise BadInputError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (args.device is None or str(args.device).startswith("cuda"))
    if use_cuda and args.device in (None, "cuda"):
        args.device = f"cuda:{local_rank}"
    if use_cuda:
        torch.cuda.set_device(torch.device(args.device))
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    args.distributed = True
    if dist.get_rank() != 0:
        args.quiet, args.log, args.json = True, None, False
        args.silent = True
    return started


def _published_sides(args) -> None:
    """``--sha256``: open the side(s) named by a registry name here, checked against the given hash."""
    if args.sha256 is None:
        return
    names = [s for s in (args.a, args.b) if not os.path.exists(s) and lookup(s) is not None]
    pairs = dict(p.split("=", 1) for p in args.sha256.split(",")) if "=" in args.sha256 else None
    if pairs is None:
        if len(names) != 1:
            raise BadInputError(f"--sha256 {args.sha256}: it applies to the side that is a published reference "
                                f"name; {'both sides are' if names else 'neither side is'} (use NAME=HEX)")
        pairs = {names[0]: args.sha256}
    for name in pairs:
        if name not in names:
            raise BadInputError(f"--sha256 {name}=...: {name!r} is not a side of this comparison that names a "
                                "published reference")
    for name, digest in pairs.items():  # checked (and on first use recorded) now; the run then reads the name as
        registry_fetch(lookup(name), sha256=digest)  # usual, which holds it to that record


def _run_refs(args) -> int:
    entries = references()
    if args.name and any(c in args.name for c in "*?["):
        entries = [e for e in entries if fnmatch.fnmatchcase(e.name, args.name)]
    elif args.name:
        entry = lookup(args.name)
        if entry is None:
            raise_unknown(args.name, close_names(args.name))
        entries = [entry]
    rows = [dict(e.to_dict(), filename=e.filename, cached=_cached_record(e)) for e in entries]
    if args.json:
        print(json.dumps(rows if not args.name or len(rows) != 1 or "*" in args.name else rows[0], indent=1))
        return 0
    if args.name and len(rows) == 1 and not any(c in args.name for c in "*?["):
        print("\n".join(entry_lines(rows[0])))
    else:
        print("\n".join(table_lines(rows)))
    return 0


def _cached_record(entry) -> dict | None:
    record = cached(entry)
    return None if record is None or not cache_path(entry).is_file() else record


def _run_fid(args) -> int:
    _check_target(args.log, "--log")
    _published_sides(args)
    _partial_sides(args)
    result = evaluate(args.a, args.b, metrics=("fid",), features=("inception",), force=args.force, **_resume(args),
                      **_options(args))
    record = result.to_dict()
    if args.json:
        print(json.dumps(record))
    else:
        print(f"FID: {result['fid']:.6f}")
        print(f"  {text.terms_line(result.values, 'fid', 'FID')}")
        print("\n".join(text.settings_lines(result, record) + text.verdict_lines(result)))
    _print_warnings(result.warnings, args.quiet)
    _append_log(args.log, record)  # after printing: a failed write never loses the result
    return 0


def _run_eval(args) -> int:
    _check_target(args.log, "--log")
    if args.report:  # refused before minutes of computation, not after
        from fidkit.report.html import require_plotly
        require_plotly()
        _check_target(args.report, "--report")
    _published_sides(args)
    _partial_sides(args)
    result = evaluate(args.a, args.b, metrics=args.metrics, features=args.features, force=args.force, **_resume(args),
                      **{name: getattr(args, name) for name in declared_options()
                         if getattr(args, name) is not None},
                      keep_examples=args.keep_examples, **_options(args))
    record = result.to_dict()
    if args.json:
        print(json.dumps(record))
    else:
        print("\n".join(text.values_lines(result)))
        if result.examples is not None:
            print(f"examples: {text.examples_line(result.examples)}")
        print("\n".join(text.settings_lines(result, record) + text.verdict_lines(result)))
    _print_warnings(result.warnings, args.quiet)
    _append_log(args.log, record)
    if args.report:
        from fidkit.report.html import write_report
        from fidkit.report.runs import Series
        write_report([Series(name="run", records=[record])], args.report)
    return 0


def _run_compare(args) -> int:
    from fidkit.report.ab import compare, compare_lines
    results = [_read_result(path, name) for path, name in ((args.result_a, "A"), (args.result_b, "B"))]
    report = compare(*results, force=args.force)
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(compare_lines(report)))
    return 0


def _read_result(path: str, name: str) -> dict:
    """A result dict from a file: one JSON object, or a JSON-lines log (its last record)."""
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{name} {path}: cannot read it ({e})") from None
    try:
        record = json.loads(content)
    except json.JSONDecodeError:
        lines = [line for line in content.splitlines() if line.strip()]
        try:  # a --log file: one result per line, the last is the latest
            record = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError as e:
            raise BadInputError(f"{name} {path}: not a fidkit result (JSON: {e})") from None
    if not isinstance(record, dict):
        raise BadInputError(f"{name} {path}: not a fidkit result (expected a JSON object)")
    return record


def _run_stats(args) -> int:
    if args.partial:
        return _run_stats_partial(args)
    if not args.output and not args.name:
        raise BadInputError("give -o FILE.npz and/or --name NAME for the statistics")
    if args.features is _KEEP:  # the old spelling
        args.features, args.keep_features = None, True
        if not args.quiet:
            print("fidkit: 'stats --features' without networks is now --keep-features (--features names the "
                  "networks, as in 'fidkit eval')", file=sys.stderr)
    if args.features is not None and args.extractors is not None:
        raise BadInputError("give the networks once: --features EXT,... (--extractors is its older name)")
    args.features = args.features if args.features is not None else args.extractors
    if args.name and lookup(args.name) is not None:
        raise BadInputError(f"--name {args.name}: a published reference of fidkit's registry has this name "
                            "(fidkit refs); choose another, so that the name keeps meaning one thing")
    if args.output:
        write_target(args.output, "-o")  # '-o /dev/full' is refused, not turned into /dev/full.npz
    if args.output and npz_path(args.output) != Path(args.output):
        # statistics are read by their suffix: write what 'fidkit fid' will read, and say so
        args.output = str(npz_path(args.output))
        if not args.quiet:
            print(f"fidkit: -o has no .npz suffix; writing {args.output}", file=sys.stderr)
    targets = [p for p in (args.output, named_stats_path(args.name) if args.name else None) if p]
    resolved = {target: _check_target(target, "-o" if target == args.output else "--name") for target in targets}
    # Progress is saved beside the first output every minute; a rerun of an interrupted command continues from it.
    checkpoint = None if args.distributed else Path(f"{targets[0]}.partial")
    if checkpoint is not None and args.restart:
        checkpoint.unlink(missing_ok=True)
    if checkpoint is not None and checkpoint.exists() and not args.quiet:
        print(f"fidkit: resuming from {checkpoint} (--restart to start over)", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FidkitWarning)
        ref = compute_reference(args.source, keep_features=args.keep_features, features=args.features,
                                checkpoint=checkpoint if checkpoint is not None and _is_path_source(args.source)
                                else None, **_options(args))
    failed = []
    for target in targets if not args.silent else ():
        try:
            ref.save(target)
        except (OSError, BadInputError) as e:  # a target changed since the check above
            failed.append(f"{target}: {getattr(e, 'strerror', None) or e}")
    targets = [t for t in targets if not any(f.startswith(f"{t}:") for f in failed)]
    if checkpoint is not None and not failed:
        checkpoint.unlink(missing_ok=True)
    stats = ref.stats.get("inception/pool3") or next(iter(ref.stats.values()))
    if args.json:
        print(json.dumps({"n": stats.n, "dim": stats.dim, "written": [str(t) for t in targets],
                          "written_through_links": {str(t): str(resolved[t]) for t in targets
                                                    if resolved[t] != Path(t).expanduser()},
                          "contents": sorted(ref.stats) + [f"{t}/features" for t in ref.features],
                          "provenance": stats.provenance.to_dict(),
                          "spaces": {s: v.provenance.to_dict() for s, v in ref.stats.items()}}))
    else:
        for space, s in ref.stats.items():
            print(f"statistics of {args.source} [{space}]: N={text.count(s.n)}, d={s.dim}, "
                  f"preprocessing={s.provenance.mode}")
        for t in targets:
            via = f" (a symbolic link: the file it names, {resolved[t]}, was replaced)" \
                if resolved[t] != Path(t).expanduser() else ""
            print(f"  written to {t}{via}")
    _print_warnings([str(w.message) for w in caught if issubclass(w.category, FidkitWarning)], args.quiet)
    if failed:
        raise OutputError("could not write " + "; ".join(failed) + " (nothing was left half-written)")
    return 0


# -- partial statistics and their merge (fidkit.mapreduce) ----------------------------------------------

def _merge_parser(sub) -> None:
    p = sub.add_parser("merge", help="merge partial statistics of shards ('fidkit stats SHARD --partial') exactly",
                       description="Merge the partials of shards into one statistics file, exactly (float64 "
                                   "co-moments), whatever their order. Refuses partials of other networks or "
                                   "preprocessing and a shard counted twice, naming them. PART may be a file, a "
                                   "quoted pattern ('parts/*.npz') or @LIST (a file naming one partial a line).")
    p.add_argument("parts", nargs="+", metavar="PART")
    p.add_argument("-o", "--output", required=True, metavar="FILE.npz", help="where to write the merged statistics")
    p.add_argument("--expect", metavar="LIST_FILE",
                   help="the shards that must all be there, one a line, as given to 'fidkit stats' (their order "
                        "is the order of kept features); missing or unexpected shards are named and refused")
    p.add_argument("--expect-count", type=_positive, default=None, metavar="N",
                   help="the number of shards that must be there")
    p.add_argument("--partial", action="store_true",
                   help="write a partial again (a level of a tree of merges) instead of statistics")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _part_files(specs: list[str]) -> list[str]:
    from fidkit.mapreduce import expand_parts
    files = []
    for spec in specs:
        found = expand_parts(spec)
        if found is None:
            raise BadInputError(f"{spec}: not a fidkit partial ('fidkit stats SHARD --partial -o FILE' writes one)")
        files += found
    return files


def _run_merge(args) -> int:
    from fidkit.mapreduce import combine, read_list
    _check_target(args.output, "-o")
    expect = read_list(args.expect, relative=False) if args.expect else None
    merged = combine(_part_files(args.parts), expect=expect, expect_count=args.expect_count)
    out = merged.save(args.output) if args.partial else merged.to_reference().save(args.output)
    if args.json:
        print(json.dumps({"written": str(out), "shards": len(merged.shards), "n": merged.n,
                          "spaces": sorted(merged.stats), "kept": sorted(merged.features)}))
    else:
        print(f"merged {len(merged.shards)} shards, N={text.count(merged.n)} "
              f"[{', '.join(sorted(set(merged.stats) | set(merged.features)))}]: written to {out}")
    return 0


def _partial_sides(args) -> None:
    """A side given as partials (a quoted pattern, @LIST or one partial file) is their merge."""
    from fidkit.mapreduce import expand_parts, merge
    for attr in ("a", "b"):
        files = expand_parts(getattr(args, attr))
        if files is not None:
            setattr(args, attr, merge(files, description=f"{getattr(args, attr)} ({len(files)} partials)"))


def _run_stats_partial(args) -> int:
    from fidkit.mapreduce import Partial, fingerprint, is_partial_file, partial, planned_identity
    if not args.output or args.name:
        raise BadInputError("--partial writes one file: give -o PART.npz (and no --name)")
    out = npz_path(args.output)
    _check_target(str(out), "-o")
    options = dict(features=args.features if args.features not in (None, _KEEP) else args.extractors,
                   keep_features=args.keep_features or args.features is _KEEP)
    run_keys = {k: v for k, v in _options(args).items() if k not in ("protocol", "preprocessing", "weights")}
    if out.exists() and not args.restart:
        if not is_partial_file(out):
            raise BadInputError(f"{out} exists and is not a fidkit partial; pass --restart to overwrite it")
        old = Partial.load(out)
        from fidkit.request import RunOptions
        now = planned_identity(args.source, preprocessing=args.preprocessing, weights=args.weights,
                               run=RunOptions(**run_keys), **options)
        stamp = fingerprint(args.source)
        shard = old.shards[0] if len(old.shards) == 1 else None
        differs = []
        if shard is None or shard.shard != args.source:
            differs.append(f"it holds {', '.join(s.shard for s in old.shards[:3])}, not {args.source}")
        elif shard.fingerprint != stamp:
            differs.append(f"the shard's content changed (fingerprint {shard.fingerprint} -> {stamp})")
        if old.identity() != now:
            differs.append("it was computed with other settings (networks, weights, preprocessing or kept features)")
        if differs:
            raise BadInputError(f"{out} already exists and differs: {'; '.join(differs)}; pass --restart to "
                                "overwrite it")
        if not args.quiet:
            print(f"{out}: already holds the partial of {args.source} (same content and settings); skipped")
        if args.json:
            print(json.dumps({"written": None, "skipped": str(out), "n": old.n}))
        return 0
    part = partial(args.source, preprocessing=args.preprocessing, weights=args.weights, protocol=args.protocol,
                   **options, **run_keys)
    part.save(out)  # only now: a shard that fails leaves no partial behind
    if args.json:
        print(json.dumps({"written": str(out), "shard": args.source, "n": part.n,
                          "fingerprint": part.shards[0].fingerprint, "spaces": sorted(part.stats),
                          "kept": sorted(part.features)}))
    else:
        print(f"partial of {args.source}: N={text.count(part.n)} [{', '.join(sorted(part.provenance))}]: "
              f"written to {out}")
    _print_warnings(part.skipped and [f"left out of {args.source}: {s}" for s in part.skipped], args.quiet)
    return 0


def _is_path_source(text: str) -> bool:
    """A folder, archive, table or shard list of images: what a checkpoint can resume (not statistics, arrays or
    names)."""
    p = Path(text)
    return p.is_dir() or p.name.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz",
                                                  ".parquet", ".arrow"))


def _print_warnings(messages: list[str], quiet: bool) -> None:
    if not quiet:
        for m in messages:
            print(f"warning: {m}", file=sys.stderr)


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--value-range -1,1`` as ``--value-range=-1,1``: argparse would read ``-1,1`` as an option."""
    out = []
    i = 0
    while i < len(argv):
        if argv[i] == "--value-range" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"--value-range={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _escape(error: UnicodeError):
    """``backslashreplace``, except that a byte of a file name that is not UTF-8 (a lone surrogate, as
    ``os.fsdecode`` keeps it) prints as ``\\xNN``, the way fidkit writes such names in its messages."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    chars = error.object[error.start:error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                    else f"\\U{ord(c):08x}") for c in chars), error.end


def _escape_undecodable_output() -> None:
    """File names that are not UTF-8 reach Python as lone surrogates; print them escaped instead of failing."""
    codecs.register_error("fidkit.escape", _escape)
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) in ("strict", "backslashreplace") and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="fidkit.escape")
            except (ValueError, OSError):
                pass


def main(argv: list[str] | None = None) -> int:
    _escape_undecodable_output()
    args = build_parser().parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    args.silent = False
    warnings.simplefilter("ignore", FidkitWarning)  # printed by us, once, with the result
    started = False
    try:
        started = _start_distributed(args)
        if args.silent:  # ranks other than 0 compute their share and print nothing
            with open(os.devnull, "w") as null:
                saved, sys.stdout = sys.stdout, null
                try:
                    return _COMMANDS[args.command](args)
                finally:
                    sys.stdout = saved
        return _COMMANDS[args.command](args)
    except FidkitError as e:
        if not args.silent:
            print(f"fidkit: error: {e}", file=sys.stderr)
        return next((code for cls, code in EXIT_CODES.items() if isinstance(e, cls)), 1)
    except KeyboardInterrupt:
        print("fidkit: interrupted", file=sys.stderr)
        return 130
    finally:
        if started:
            import torch.distributed as dist
            dist.destroy_process_group()


_COMMANDS = {"fid": _run_fid, "eval": _run_eval, "stats": _run_stats, "merge": _run_merge,
             "extractors": _run_extractors, "convert": _run_convert, "refs": _run_refs, "adm": _run_adm,
             "protocols": _run_protocols, "report": _run_report, "plot": _run_plot,
             "compare": _run_compare}

if __name__ == "__main__":
    sys.exit(main())
