"""A/B of two runs: per metric the difference, and whether it is larger than the noise of the measurement.

Two result dicts (``EvalResult.to_dict()``, ``fidkit eval --json``) are compared metric by metric.  A difference
counts as *distinguishable* only when every criterion both results allow says so:

* bootstrap intervals (``K_ci``, ``--bootstrap N``) in both: the two intervals do not overlap;
* a Fréchet distance with a noise floor (the ``noise_floor`` metric: the FD between two random halves of the
  reference, in the same space) in either: ``|difference|`` exceeds the larger floor.

With neither, nothing can be said and the metric is not distinguishable (the reason says what to add).
Results of different feature spaces (network, weights, layer, preprocessing) or different references are
refused (:class:`~fidkit.errors.IncomparableStatsError`) unless ``force``, which flags them instead; different
sample counts or metric options are flagged (values such as FID depend on N).
"""

from __future__ import annotations

from typing import Any

from fidkit.errors import IncomparableStatsError
from fidkit.report.text import is_detail

#: Keys of a result dict that describe the run rather than measure it.
RUN_KEYS = frozenset({"n_a", "n_b", "a", "b", "mode", "metrics", "options", "extractor", "layer", "weights_sha256",
                      "device", "seconds", "warnings", "fidkit_version", "skipped", "jpeg_samples", "verdict",
                      "feature_spaces", "examples", "step", "name", "guidance"})


def metric_keys(result: dict) -> list[str]:
    """The main values of a result: numbers that are neither run settings nor details of another value."""
    return [k for k, v in result.items() if k not in RUN_KEYS and isinstance(v, (int, float))
            and not isinstance(v, bool) and not is_detail(k, result)]


def noise_floor_key(key: str) -> str | None:
    """The noise floor that measures the noise of Fréchet value ``key``: ``fid`` -> ``noise_floor``,
    ``fd_dinov2`` -> ``noise_floor_dinov2``; None for others (sfid, fvd, KID, ...)."""
    if key == "fid":
        return "noise_floor"
    if key.startswith("fd_") and not key.startswith("fd_inf"):
        return "noise_floor_" + key[3:]
    return None


def differences(a: dict, b: dict) -> list[str]:
    """Why ``a`` and ``b`` do not measure the same thing (empty: they do): feature spaces, reference."""
    out = []
    fa, fb = a.get("feature_spaces") or {}, b.get("feature_spaces") or {}
    for space in sorted(fa.keys() & fb.keys()):
        for field in ("extractor", "weights_sha256", "layer", "preprocessing", "clip"):
            if fa[space].get(field) != fb[space].get(field):
                out.append(f"{space}: {field} {fa[space].get(field)!r} vs {fb[space].get(field)!r}")
    if not (fa.keys() & fb.keys()):
        for field in ("extractor", "weights_sha256", "layer", "mode"):
            if a.get(field) != b.get(field):
                out.append(f"{field} {a.get(field)!r} vs {b.get(field)!r}")
    if a.get("a") != b.get("a"):
        out.append(f"reference {a.get('a')!r} vs {b.get('a')!r}")
    return out


def flags(a: dict, b: dict) -> list[str]:
    """What differs without making the runs incomparable, but that a reader must know."""
    out = []
    for key, what in (("n_a", "reference samples"), ("n_b", "generated samples")):
        if a.get(key) != b.get(key):
            out.append(f"{what}: N={a.get(key)} vs N={b.get(key)} (FID-like values depend on N)")
    oa, ob = a.get("options") or {}, b.get("options") or {}
    changed = sorted(k for k in oa.keys() & ob.keys() if oa[k] != ob[k] and k not in ("bootstrap", "confidence"))
    if changed:
        out.append("metric options differ: " + ", ".join(f"{k} {oa[k]!r} vs {ob[k]!r}" for k in changed))
    if a.get("fidkit_version") != b.get("fidkit_version"):
        out.append(f"fidkit {a.get('fidkit_version')} vs {b.get('fidkit_version')}")
    return out


def compare(a: dict[str, Any], b: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """``b`` against ``a``, metric by metric (module docstring).  Returns ``{"comparable", "differences",
    "flags", "metrics": {key: {"a", "b", "difference", "relative", "a_ci", "b_ci", "intervals_overlap",
    "noise_floor", "exceeds_noise_floor", "distinguishable", "reason"}}}``."""
    problems = differences(a, b)
    if problems and not force:
        raise IncomparableStatsError("the two results do not measure the same thing (" + "; ".join(problems)
                                     + "); pass force=True (--force) to compare them anyway")
    metrics = {}
    for key in [k for k in metric_keys(a) if k in metric_keys(b)]:
        if key.startswith("noise_floor"):
            continue
        metrics[key] = _one(key, a, b, comparable=not problems)
    return {"comparable": not problems, "differences": problems, "flags": flags(a, b), "metrics": metrics}


def _one(key: str, a: dict, b: dict, *, comparable: bool) -> dict[str, Any]:
    va, vb = float(a[key]), float(b[key])
    diff = vb - va
    out: dict[str, Any] = {"a": va, "b": vb, "difference": diff,
                           "relative": diff / abs(va) if va else None,
                           "a_ci": a.get(f"{key}_ci"), "b_ci": b.get(f"{key}_ci"),
                           "intervals_overlap": None, "noise_floor": None, "exceeds_noise_floor": None}
    verdicts: list[tuple[bool, str]] = []
    if out["a_ci"] is not None and out["b_ci"] is not None:
        (la, ha), (lb, hb) = out["a_ci"], out["b_ci"]
        overlap = la <= hb and lb <= ha
        out["intervals_overlap"] = overlap
        verdicts.append((not overlap, "the bootstrap intervals " + ("overlap" if overlap else "do not overlap")))
    floor_key = noise_floor_key(key)
    floors = [float(r[floor_key]) for r in (a, b) if floor_key and isinstance(r.get(floor_key), (int, float))]
    if floors:
        floor = max(floors)
        exceeds = abs(diff) > floor
        out["noise_floor"], out["exceeds_noise_floor"] = floor, exceeds
        verdicts.append((exceeds, f"|difference| {abs(diff):.4g} is {'above' if exceeds else 'within'} the noise "
                                  f"floor {floor:.4g} (real vs real FD)"))
    if not comparable:
        out["distinguishable"], out["reason"] = False, "the runs do not measure the same thing (see differences)"
    elif not verdicts:
        out["distinguishable"] = False
        out["reason"] = ("no bootstrap interval or noise floor to judge by: run both with --bootstrap N"
                         + (" or the noise_floor metric" if floor_key else ""))
    else:
        out["distinguishable"] = all(ok for ok, _ in verdicts)
        out["reason"] = "; ".join(why for _, why in verdicts)
    return out


def compare_lines(report: dict[str, Any], *, names: tuple[str, str] = ("A", "B")) -> list[str]:
    """The comparison as text: one line per metric, then the differences and flags."""
    lines = []
    for key, m in report["metrics"].items():
        mark = "distinguishable" if m["distinguishable"] else "not distinguishable"
        lines.append(f"{key:>24}: {names[0]} {m['a']:.6g}  {names[1]} {m['b']:.6g}  "
                     f"difference {m['difference']:+.4g}  {mark}: {m['reason']}")
    lines += [f"not comparable: {d}" for d in report["differences"]]
    lines += [f"note: {f}" for f in report["flags"]]
    return lines
