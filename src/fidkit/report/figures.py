"""The data of every figure of a report, from result dicts alone: plain JSON-able dicts that the HTML page
(plotly), the PNG/SVG files (matplotlib) and the ``report.json`` sidecar all draw from.

A report has sections (:func:`build_report`); each holds ``figures`` (traces of points, bands and flags), perhaps
``images`` or ``tables``, and a ``note`` instead when the results lack what it shows.  Nothing here computes a
metric: values are read as the evaluation stored them (interface B), so a section appears exactly when the
results carry its keys.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fidkit.report.runs import Series

#: Suffixes of the details stored beside a main value ``K`` (``K_ci``, ``K_mean_term``, ...).
DETAIL_SUFFIXES = ("_mean_term", "_cov_term", "_subset_size", "_scores", "_slope", "_sizes", "_std", "_ci",
                   "_r2", "_n")
#: Keys of a result that are not metric values.
META_KEYS = frozenset({"n_a", "n_b", "a", "b", "mode", "metrics", "options", "extractor", "layer", "weights_sha256",
                       "device", "seconds", "warnings", "fidkit_version", "skipped", "jpeg_samples", "verdict",
                       "feature_spaces", "examples", "step", "name", "guidance", "epoch", "time", "timestamp"})
#: Generic metric names whose values carry a feature-space suffix (``fd_dinov2``), longest first.
_GENERIC = ("noise_floor", "precision", "coverage", "density", "fd_inf", "recall", "fd", "kd")
#: Historic and space-specific names: family and feature space.
_NAMED = {"fid": ("fd", ""), "kid": ("kd", ""), "fid_inf": ("fd_inf", ""), "fvd": ("fd", "i3d"),
          "kvd": ("kd", "i3d"), "is": ("is", ""), "is_inf": ("is_inf", ""), "sfid": ("sfid", ""),
          "cmmd": ("cmmd", "")}
LOWER_IS_BETTER = frozenset({"fd", "kd", "fd_inf", "sfid", "cmmd", "noise_floor"})
#: Families whose members in different feature spaces should move together across checkpoints.
AGREEING_FAMILIES = ("fd", "kd")

#: Caps on per-sample views: a report stays a bounded size whatever a result holds.
MAX_GRID, MAX_REALISM, MAX_NEAREST, MAX_NEIGHBOURS, MAX_DIRECTIONS, MAX_DIRECTION_THUMBS = 64, 16, 16, 5, 8, 8
_THUMB = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]+$")


# ---------------------------------------------------------------------------------------------------- keys

def family(key: str) -> tuple[str, str]:
    """``(generic metric, feature-space key)`` of a result key: ``fid`` -> ``("fd", "")``, ``fd_dinov2`` ->
    ``("fd", "dinov2")``, ``precision_clip`` -> ``("precision", "clip")``; an unknown key is its own family."""
    if key in _NAMED:
        return _NAMED[key]
    for base in _GENERIC:
        if key == base:
            return base, ""
        if key.startswith(base + "_"):
            return base, key[len(base) + 1:]
    return key, ""


def space_label(space: str) -> str:
    return space or "inception"


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metric_keys(records: list[dict]) -> list[str]:
    """Main values present in any record, in order of first appearance: finite numbers that are neither metadata
    nor a detail (``K_ci``, ``K_std``, ...) of another value."""
    out: list[str] = []
    for r in records:
        for k, v in r.items():
            if k in out or k in META_KEYS or not is_number(v):
                continue
            if any(k.endswith(s) and k[: -len(s)] in r for s in DETAIL_SUFFIXES):
                continue
            out.append(k)
    return out


def noise_floor_key(key: str) -> str | None:
    """The real-vs-real noise floor that applies to a Fréchet distance ``key`` (same feature space)."""
    fam, space = family(key)
    if fam != "fd":
        return None
    return "noise_floor" + (f"_{space}" if space else "")


def fd_key_of_space(space: str) -> str:
    return "fid" if not space else ("fvd" if space == "i3d" else f"fd_{space}")


def interval(record: dict, key: str) -> tuple[float, float] | None:
    ci = record.get(f"{key}_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(is_number(v) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


# ---------------------------------------------------------------------------------------------------- x axis

def x_axis(records: list[dict]) -> tuple[str, list[Any]]:
    """``("step", steps)`` when every record has a numeric step, else ``("name", names)`` when every record is
    named, else ``("order", 0, 1, ...)``: the order in the log."""
    if records and all(is_number(r.get("step")) for r in records):
        return "step", [r["step"] for r in records]
    if records and all(isinstance(r.get("name"), (str, int, float)) and not isinstance(r.get("name"), bool)
                       for r in records):
        return "name", [str(r["name"]) for r in records]
    return "order", list(range(len(records)))


def point_label(record: dict, x: Any, kind: str) -> str:
    """How a point is named in tooltips and on the fidelity/diversity plane."""
    parts = [f"{kind} {x}" if kind != "name" else str(x)] if kind != "order" else [f"#{x}"]
    if is_number(record.get("guidance")):
        parts.append(f"guidance {record['guidance']:g}")
    return ", ".join(parts)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


# ---------------------------------------------------------------------------------------------------- sections

SECTIONS = ("curves", "decomposition", "fidelity_diversity", "fd_vs_n", "samples", "provenance", "ab")


def build_report(series: list[Series], *, ab: tuple[dict, dict] | None = None, title: str = "fidkit report"
                 ) -> dict:
    """Every section's data.  ``ab``: two results to compare (default: the two results when exactly two are
    given)."""
    records = [r for s in series for r in s.records]
    if ab is None and len(records) == 2:
        ab = (records[0], records[1])
    return {
        "title": title,
        "series": [{"name": s.name, "records": len(s.records), "dropped": s.dropped} for s in series],
        "sections": [curves_section(series), decomposition_section(series), fidelity_diversity_section(series),
                     fd_vs_n_section(series), samples_section(series), provenance_section(series),
                     ab_section(ab)],
    }


def _section(sid: str, title: str, description: str, note: str | None = None, **parts: Any) -> dict:
    return {"id": sid, "title": title, "description": description, "note": note, **parts}


def curves_section(series: list[Series]) -> dict:
    """One figure per metric: its value over checkpoints per series, the bootstrap interval as a band, the
    real-vs-real noise floor as a band on Fréchet distances, and flags where feature spaces disagree."""
    desc = ("Each metric over checkpoints. Shaded bands are bootstrap intervals where they were computed; the grey "
            "band under a Fréchet distance reaches the real-vs-real noise floor (the distance between two halves of "
            "the reference): differences inside it are not evidence of change. A red cross marks a checkpoint where "
            "two feature spaces disagree on the direction of change.")
    keys = metric_keys([r for s in series for r in s.records])
    keys = [k for k in keys if family(k)[0] != "noise_floor"]
    if not keys:
        return _section("curves", "Metrics over checkpoints", desc, note="no metric values in these results")
    flags = disagreement_flags(series)
    figures = []
    for key in keys:
        traces, fig_flags = [], []
        x_kinds = set()
        for s in series:
            kind, xs = x_axis(s.records)
            x_kinds.add(kind)
            pts = [(x, r) for x, r in zip(xs, s.records) if is_number(r.get(key))]
            if not pts:
                continue
            nf = noise_floor_key(key)
            floor = [(x, r[nf]) for x, r in pts if nf and is_number(r.get(nf))]
            if floor:
                traces.append({"name": f"{s.name}: noise floor", "mode": "band", "x": [x for x, _ in floor],
                               "low": [0.0] * len(floor), "high": [float(v) for _, v in floor], "role": "noise_floor"})
            ci = [(x, interval(r, key)) for x, r in pts]
            if any(c is not None for _, c in ci):
                kept = [(x, c) for x, c in ci if c is not None]
                traces.append({"name": f"{s.name}: interval", "mode": "band", "x": [x for x, _ in kept],
                               "low": [c[0] for _, c in kept], "high": [c[1] for _, c in kept], "role": "interval"})
            traces.append({"name": s.name, "mode": "lines+markers", "x": [x for x, _ in pts],
                           "y": [float(r[key]) for _, r in pts],
                           "text": [f"{point_label(r, x, kind)}<br>{key} = {_fmt(r[key])}"
                                    + (f" [{_fmt(interval(r, key)[0])}, {_fmt(interval(r, key)[1])}]"
                                       if interval(r, key) else "") for x, r in pts],
                           "role": "value"})
            for f in flags:
                if f["series"] == s.name and key in f["keys"]:
                    y = next(float(r[key]) for x, r in pts if x == f["x"])
                    fig_flags.append({**f, "y": y})
        fam, space = family(key)
        figures.append({"id": f"curve-{key}", "title": f"{key} ({space_label(space)} space)", "kind": "lines",
                        "x_title": "/".join(sorted(x_kinds)), "y_title": key,
                        "x_type": "category" if x_kinds == {"name"} else "linear",
                        "lower_is_better": fam in LOWER_IS_BETTER, "traces": traces, "flags": fig_flags})
    return _section("curves", "Metrics over checkpoints", desc, figures=figures, flags=flags)


def disagreement_flags(series: list[Series]) -> list[dict]:
    """Checkpoints where two feature spaces' values of one family (Fréchet or kernel distance) moved in opposite
    directions since the previous checkpoint of the same series."""
    out = []
    for s in series:
        kind, xs = x_axis(s.records)
        keys = metric_keys(s.records)
        for fam in AGREEING_FAMILIES:
            members = [k for k in keys if family(k)[0] == fam]
            for i in range(1, len(s.records)):
                prev, cur = s.records[i - 1], s.records[i]
                change = {k: float(cur[k]) - float(prev[k]) for k in members
                          if is_number(cur.get(k)) and is_number(prev.get(k))}
                ks = list(change)
                for a in range(len(ks)):
                    for b in range(a + 1, len(ks)):
                        ka, kb = ks[a], ks[b]
                        if change[ka] * change[kb] < 0:
                            out.append({"series": s.name, "x": xs[i], "keys": [ka, kb],
                                        "changes": [change[ka], change[kb]],
                                        "text": f"{ka} {'rose' if change[ka] > 0 else 'fell'} by "
                                                f"{_fmt(abs(change[ka]))} while {kb} "
                                                f"{'rose' if change[kb] > 0 else 'fell'} by {_fmt(abs(change[kb]))}"})
    return out


def decomposition_section(series: list[Series]) -> dict:
    """Fréchet distances split into the mean term |mu_a - mu_b|^2 and the covariance (trace) term, per
    checkpoint, and the top directions of the covariance difference with exemplar thumbnails."""
    desc = ("A Fréchet distance is the sum of a mean term (how far apart the average features are) and a covariance "
            "term (how differently the features spread). A model whose mean term dominates produces the wrong "
            "typical image; one whose covariance term dominates has the wrong variety. The directions below are "
            "where the generated covariance differs most from the reference, with generated samples at each end.")
    figures = []
    for key in metric_keys([r for s in series for r in s.records]):
        if family(key)[0] != "fd":
            continue
        for s in series:
            kind, xs = x_axis(s.records)
            pts = [(x, r) for x, r in zip(xs, s.records)
                   if is_number(r.get(f"{key}_mean_term")) and is_number(r.get(f"{key}_cov_term"))]
            if not pts:
                continue
            traces = [{"name": f"{term} term", "mode": "bar", "x": [x for x, _ in pts],
                       "y": [float(r[f"{key}_{term}_term"]) for _, r in pts],
                       "text": [f"{point_label(r, x, kind)}<br>{term} term = {_fmt(r[f'{key}_{term}_term'])} of "
                                f"{key} = {_fmt(r[key])}" if is_number(r.get(key)) else point_label(r, x, kind)
                                for x, r in pts], "role": f"{term}_term"}
                      for term in ("mean", "cov")]
            figures.append({"id": f"decomposition-{key}-{s.name}", "title": f"{key}: mean + covariance terms "
                            f"({s.name})", "kind": "stacked_bars", "x_title": kind, "y_title": key,
                            "x_type": "category" if kind == "name" else "linear", "traces": traces, "flags": []})
    directions = []
    found = _latest_examples(series)
    if found is not None:
        record, examples = found
        for d in (examples.get("directions") or [])[:MAX_DIRECTIONS]:
            if not isinstance(d, dict):
                continue
            directions.append({"eigenvalue": d.get("eigenvalue"), "explained": d.get("explained"),
                               "low": _thumbs(d.get("low"), MAX_DIRECTION_THUMBS),
                               "high": _thumbs(d.get("high"), MAX_DIRECTION_THUMBS)})
    if not figures and not directions:
        return _section("decomposition", "Fréchet distance: mean and covariance terms", desc,
                        note="the results hold no mean/covariance terms (K_mean_term, K_cov_term) and no "
                             "covariance-difference directions (examples.directions)")
    return _section("decomposition", "Fréchet distance: mean and covariance terms", desc, figures=figures,
                    images={"directions": directions})


def fidelity_diversity_section(series: list[Series]) -> dict:
    """Precision against recall and density against coverage as planes, each series traced point to point."""
    desc = ("Fidelity (precision, density: how many generated samples look like real ones) against diversity "
            "(recall, coverage: how much of the real data the generated samples reach). The ideal is the top right; "
            "a guidance sweep typically trades one for the other. Error bars are bootstrap intervals.")
    records = [r for s in series for r in s.records]
    keys = metric_keys(records)
    figures = []
    for y_fam, x_fam in (("precision", "recall"), ("density", "coverage")):
        for y_key in [k for k in keys if family(k)[0] == y_fam]:
            space = family(y_key)[1]
            x_key = x_fam + (f"_{space}" if space else "")
            traces = []
            for s in series:
                kind, xs = x_axis(s.records)
                pts = [(x, r) for x, r in zip(xs, s.records) if is_number(r.get(x_key)) and is_number(r.get(y_key))]
                if not pts:
                    continue
                trace = {"name": s.name, "mode": "lines+markers", "x": [float(r[x_key]) for _, r in pts],
                         "y": [float(r[y_key]) for _, r in pts], "labels": [point_label(r, x, kind) for x, r in pts],
                         "text": [f"{point_label(r, x, kind)}<br>{y_key} = {_fmt(r[y_key])}, {x_key} = "
                                  f"{_fmt(r[x_key])}" for x, r in pts], "role": "value"}
                for axis, key in (("error_x", x_key), ("error_y", y_key)):
                    cis = [interval(r, key) for _, r in pts]
                    if all(c is not None for c in cis):
                        trace[axis] = {"minus": [float(r[key]) - c[0] for (_, r), c in zip(pts, cis)],
                                       "plus": [c[1] - float(r[key]) for (_, r), c in zip(pts, cis)]}
                traces.append(trace)
            if traces:
                figures.append({"id": f"plane-{y_key}", "title": f"{y_key} vs {x_key} ({space_label(space)} space)",
                                "kind": "plane", "x_title": x_key, "y_title": y_key, "x_type": "linear",
                                "traces": traces, "flags": []})
    if not figures:
        return _section("fidelity_diversity", "Fidelity vs diversity", desc,
                        note="the results hold no precision/recall or density/coverage (--metrics prdc)")
    return _section("fidelity_diversity", "Fidelity vs diversity", desc, figures=figures)


def fd_vs_n_section(series: list[Series]) -> dict:
    """FD on subsets of increasing size N, the fitted a + b/N, its limit FD-infinity and the N the run used."""
    desc = ("Fréchet distances shrink as the sample count N grows: the bias is close to b/N. FD-infinity fits "
            "FD_N = a + b/N over subsets and reports a, comparable across sample counts. The dotted line is the N "
            "of the run; compare plain FD values only at the same N.")
    figures, missing_scores = [], []
    for s in series:
        for key in metric_keys(s.records):
            if family(key)[0] != "fd_inf":
                continue
            record = next((r for r in reversed(s.records) if is_number(r.get(key))), None)
            if record is None:
                continue
            space = family(key)[1]
            sizes, scores = record.get(f"{key}_sizes"), record.get(f"{key}_scores")
            a = float(record[key])
            traces, fd_key = [], fd_key_of_space(space)
            n_used = record.get("n_b") if is_number(record.get("n_b")) else None
            if isinstance(sizes, list) and isinstance(scores, list) and len(sizes) == len(scores) >= 2 and \
                    all(is_number(v) for v in sizes + scores):
                slope = record.get(f"{key}_slope")
                if not is_number(slope):
                    slope = _fit_slope(sizes, scores, a)
                traces.append({"name": "FD on subsets", "mode": "markers", "x": [int(n) for n in sizes],
                               "y": [float(v) for v in scores],
                               "text": [f"N = {int(n)}<br>FD = {_fmt(v)}" for n, v in zip(sizes, scores)],
                               "role": "subset"})
                lo, hi = min(sizes), max(max(sizes), n_used or 0) * 4
                grid = [lo * (hi / lo) ** (i / 60) for i in range(61)]
                traces.append({"name": "fit a + b/N", "mode": "lines", "x": grid, "y": [a + slope / n for n in grid],
                               "text": [f"N = {n:.0f}<br>fit = {_fmt(a + slope / n)}" for n in grid], "role": "fit"})
            else:
                missing_scores.append(f"{s.name}: {key}")
            xs_all = [t["x"] for t in traces]
            x_range = [min(min(x) for x in xs_all), max(max(x) for x in xs_all)] if xs_all else \
                [max(1, (n_used or 1) // 10), (n_used or 10) * 4]
            traces.append({"name": f"{key} (N -> infinity) = {_fmt(a)}", "mode": "lines", "x": x_range,
                           "y": [a, a], "text": [f"{key} = {_fmt(a)}"] * 2, "role": "limit"})
            if is_number(record.get(fd_key)) and n_used:
                traces.append({"name": f"{fd_key} at the run's N", "mode": "markers", "x": [n_used],
                               "y": [float(record[fd_key])], "text": [f"N = {n_used}<br>{fd_key} = "
                                                                      f"{_fmt(record[fd_key])}"], "role": "run"})
            figures.append({"id": f"fdn-{key}-{s.name}", "title": f"FD vs N ({space_label(space)} space, {s.name})",
                            "kind": "fd_vs_n", "x_title": "N (generated samples)", "y_title": "FD", "x_type": "log",
                            "traces": traces, "flags": [], "n_used": n_used,
                            "r2": record.get(f"{key}_r2")})
    if not figures:
        return _section("fd_vs_n", "FD vs N and FD-infinity", desc,
                        note="the results hold no FD-infinity (--metrics fid_inf)")
    note = ("per-N scores are not in " + ", ".join(missing_scores) + " (results of an older fidkit): only the "
            "extrapolated value is drawn") if missing_scores else None
    return _section("fd_vs_n", "FD vs N and FD-infinity", desc, note=note, figures=figures)


def _fit_slope(sizes: list, scores: list, a: float) -> float:
    """b of score = a + b/N with a as stored: least squares over the points (one unknown)."""
    inv = [1.0 / float(n) for n in sizes]
    den = sum(v * v for v in inv)
    return sum(i * (float(s) - a) for i, s in zip(inv, scores)) / den if den else 0.0


def _latest_examples(series: list[Series]) -> tuple[dict, dict] | None:
    for s in reversed(series):
        for r in reversed(s.records):
            if isinstance(r.get("examples"), dict):
                return r, r["examples"]
    return None


def _thumbs(items: Any, cap: int) -> list[str]:
    """Only inline image data: a URL in a result must never make the page reach the network."""
    if not isinstance(items, list):
        return []
    return [t for t in items if isinstance(t, str) and _THUMB.match(t)][:cap]


def _thumb(item: Any) -> str | None:
    out = _thumbs([item], 1)
    return out[0] if out else None


def samples_section(series: list[Series]) -> dict:
    """The per-sample views of the latest result that kept examples (``--keep-examples K``)."""
    desc = ("Generated samples of the latest result that kept examples: a grid, the most and least realistic by "
            "realism score, and each sample's nearest reference images with their feature distance; a near copy "
            "(distance under the threshold) is flagged: the model may be memorising its training data.")
    found = _latest_examples(series)
    if found is None:
        return _section("samples", "Samples", desc, note="the results hold no examples (evaluate with "
                                                          "--keep-examples K)")
    record, ex = found
    realism = {}
    for which in ("most_realistic", "least_realistic"):
        items = (ex.get("realism") or {}).get(which) if isinstance(ex.get("realism"), dict) else None
        items = items if isinstance(items, list) else ex.get(which) if isinstance(ex.get(which), list) else []
        realism[which] = [{"index": it.get("index"), "score": it.get("score"), "thumb": _thumb(it.get("thumb"))}
                          for it in items[:MAX_REALISM] if isinstance(it, dict) and _thumb(it.get("thumb"))]
    nearest = []
    for it in (ex.get("nearest") or [])[:MAX_NEAREST]:
        if not isinstance(it, dict) or not _thumb(it.get("thumb")):
            continue
        nearest.append({"index": it.get("index"), "thumb": _thumb(it.get("thumb")),
                        "near_copy": bool(it.get("near_copy")),
                        "neighbours": [{"ref_index": n.get("ref_index"), "distance": n.get("distance"),
                                        "thumb": _thumb(n.get("thumb"))}
                                       for n in (it.get("neighbours") or [])[:MAX_NEIGHBOURS]
                                       if isinstance(n, dict) and _thumb(n.get("thumb"))]})
    images = {"space": ex.get("space"), "grid": _thumbs(ex.get("grid"), MAX_GRID), **realism, "nearest": nearest,
              "near_copy_threshold": ex.get("near_copy_threshold"), "from": record.get("name", record.get("step"))}
    return _section("samples", "Samples", desc, images=images)


def provenance_section(series: list[Series]) -> dict:
    """For the latest result of each series: network, weights, preprocessing, N, reference, warnings, verdict."""
    desc = ("What the numbers were computed with. Values are comparable only between runs with the same network "
            "weights, preprocessing, reference and N; the verdict says whether they are comparable with a published "
            "protocol's numbers.")
    cards = []
    for s in series:
        if not s.records:
            continue
        r = s.records[-1]
        verdict = r.get("verdict") if isinstance(r.get("verdict"), dict) else None
        cards.append({"series": s.name, "network": r.get("extractor"), "layer": r.get("layer"),
                      "weights_sha256": r.get("weights_sha256"), "preprocessing": r.get("mode"),
                      "n_reference": r.get("n_a"), "n_generated": r.get("n_b"), "reference": r.get("a"),
                      "generated": r.get("b"), "feature_spaces": r.get("feature_spaces") or {},
                      "options": r.get("options") or {}, "fidkit_version": r.get("fidkit_version"),
                      "warnings": [str(w) for w in (r.get("warnings") or [])][:50],
                      "verdict": None if verdict is None else {
                          "protocol": verdict.get("protocol"), "comparable": verdict.get("comparable"),
                          "summary": verdict.get("summary"), "deviations": verdict.get("deviations") or []}})
    if not cards:
        return _section("provenance", "Provenance", desc, note="no results")
    return _section("provenance", "Provenance", desc, cards=cards)


# ---------------------------------------------------------------------------------------------------- A/B

def _compare(a: dict, b: dict) -> dict | str:
    """:func:`fidkit.report.compare` of the two results, or why they cannot be compared (other feature spaces or
    references: the section says so instead of showing differences that mean nothing)."""
    from fidkit.errors import IncomparableStatsError
    from fidkit.report.ab import compare
    try:
        return compare(a, b)
    except IncomparableStatsError as e:
        return str(e)


def ab_section(ab: tuple[dict, dict] | None) -> dict:
    desc = ("Run B against run A: each metric's difference, against the real-vs-real noise floor and the bootstrap "
            "intervals. A difference smaller than the noise floor, or with overlapping intervals, is not evidence "
            "that one run is better.")
    if ab is None:
        return _section("ab", "A/B comparison", desc, note="give exactly two results (or --ab A B) to compare them")
    a, b = ab
    result = _compare(a, b)
    if isinstance(result, str):
        return _section("ab", "A/B comparison", desc, note=f"not compared: {result}")
    per_metric = result.get("metrics") if isinstance(result.get("metrics"), dict) else \
        {k: v for k, v in result.items() if isinstance(v, dict)}
    columns: list[str] = []
    for row in per_metric.values():
        columns += [c for c in row if c not in columns]
    rows = [[key] + [row.get(c) for c in columns] for key, row in per_metric.items()]
    names = [str(r.get("name", r.get("step", side))) for r, side in ((a, "A"), (b, "B"))]
    traces = [{"name": "B - A", "mode": "bar", "x": [r[0] for r in rows],
               "y": [float(per_metric[r[0]].get("difference", 0.0) or 0.0) for r in rows],
               "text": [f"{r[0]}: B - A = {_fmt(float(per_metric[r[0]].get('difference', 0.0) or 0.0))}"
                        for r in rows], "role": "difference"}] if rows else []
    figures = [{"id": "ab-differences", "title": f"B ({names[1]}) - A ({names[0]})", "kind": "bars",
                "x_title": "metric", "y_title": "difference", "x_type": "category", "traces": traces,
                "flags": []}] if traces else []
    return _section("ab", "A/B comparison", desc, figures=figures,
                    tables=[{"title": f"A = {names[0]}, B = {names[1]}; distinguishable: "
                                      f"{result.get('distinguishable')}",
                             "columns": ["metric"] + columns, "rows": rows}],
                    method=result.get("method", "fidkit.report.compare"))
