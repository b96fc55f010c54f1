"""Results as text: what ``fidkit fid``/``eval`` print.  Labels come from the metrics' declarations (carried in
:attr:`EvalResult.labels`); details (``_std``, ``_ci``, ``_sizes``, ...) are printed beside their value."""

from __future__ import annotations


def count(n) -> str:
    return "unknown" if n is None else str(n)


def settings_lines(result, record: dict) -> list[str]:
    """The sample counts and, per feature space, the network, layer, preprocessing, weights and device."""
    out = []
    out.append(f"  real: {result.a} (N={count(result.n_a)})")
    out.append(f"  fake: {result.b} (N={count(result.n_b)})")
    spaces = record["feature_spaces"] or {"": {"extractor": record["extractor"], "layer": record["layer"],
                                               "preprocessing": result.mode, "weights_sha256": record["weights_sha256"]}}
    for s in spaces.values():
        sha = s["weights_sha256"]
        clip = f"  clip: {s['clip']}" if s.get("clip") else ""
        out.append(f"  mode: {s['preprocessing']}  layer: {s['layer']}  extractor: {s['extractor']}"
                   f"  weights: {sha[:12] + '…' if sha else None}  device: {result.device}{clip}")
    return out


DETAILS = ("_std", "_ci", "_sizes", "_subset_size", "_n", "_r2", "_scores", "_slope", "_mean_term", "_cov_term")


def is_detail(key: str, values: dict) -> bool:
    return any(key.endswith(s) and key[: -len(s)] in values for s in DETAILS)


def values_lines(result) -> list[str]:
    """One line per main value: its declared label, the value, its spread, interval or fit."""
    v = result.values
    out = []
    for key in v:
        if is_detail(key, v):
            continue
        label = result.labels.get(key, key)
        if f"{key}_std" in v:
            text = f"{v[key]:.6f} ± {v[key + '_std']:.6f}"
        else:
            text = f"{v[key]:.6f}"
        if f"{key}_subset_size" in v:
            text += f"  ({result.options.get('kid_subsets')} subsets of {v[key + '_subset_size']})"
        if f"{key}_n" in v:
            text += f"  (two halves of N={v[key + '_n']})"
        if f"{key}_ci" in v:
            lo, hi = v[f"{key}_ci"]
            text += (f"  [{lo:.6f}, {hi:.6f}] ({result.options['confidence']:.0%}, "
                     f"{result.options['bootstrap']} bootstrap resamples)")
        if f"{key}_sizes" in v:
            text += (f"  (fit over N = {v[key + '_sizes'][0]}..{v[key + '_sizes'][-1]}, "
                     f"R² {v.get(key + '_r2', float('nan')):.3f})")
        out.append(f"{label:>32}: {text}")
        terms = terms_line(v, key, label)
        if terms:
            out.append(f"{'':>32}  {terms}")
    return out


def terms_line(values: dict, key: str, label: str) -> str | None:
    """A Fréchet distance as its two terms, ``FID 12.3 = mean 4.1 + covariance 8.2`` (None without them)."""
    if f"{key}_mean_term" not in values or f"{key}_cov_term" not in values:
        return None
    return (f"{label} {values[key]:.4g} = mean {values[key + '_mean_term']:.4g} + covariance "
            f"{values[key + '_cov_term']:.4g}")


def verdict_lines(result) -> list[str]:
    """The comparability verdict: its summary, then one indented line per deviation (empty without one)."""
    v = getattr(result, "verdict", None)
    if v is None:
        return []
    first, *rest = v.lines()
    return [f"verdict: {first}", *rest]


def examples_line(examples: dict) -> str:
    """What the per-sample views hold, in one line (the thumbnails are in the JSON result)."""
    parts = [f"space {examples.get('space')}", f"{len(examples.get('grid') or [])} in the grid"]
    if examples.get("realism"):
        parts.append(f"{len(examples['realism']['most_realistic'])} most/least realistic")
    if examples.get("nearest") is not None:
        parts.append(f"{examples.get('near_copies', 0)} near copies (nearest reference closer than "
                     f"{examples.get('near_copy_threshold', float('nan')):.4g})")
    if examples.get("directions"):
        parts.append(f"{len(examples['directions'])} covariance directions")
    return "; ".join(parts) + "".join(f"; {n}" for n in examples.get("notes", [])) + " (thumbnails: --json)"
