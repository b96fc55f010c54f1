"""The report's figures as PNG or SVG files through matplotlib (``pip install 'fidkit[plot]'``): the same figure
data as the HTML page, for papers and slides."""

from __future__ import annotations

import io
import re
from pathlib import Path

from fidkit._io import atomic_write
from fidkit.errors import BadInputError
from fidkit.report.html import PALETTE


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise BadInputError("fidkit plot needs matplotlib: pip install 'fidkit[plot]'") from None
    matplotlib.use("Agg")                    # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def figure_file_name(fig_id: str, fmt: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", fig_id).strip("_") + "." + fmt


def write_figures(report: dict, directory: str | Path, *, fmt: str = "png") -> list[Path]:
    """One file per figure of every section into ``directory`` (created); returns the paths written."""
    if fmt not in ("png", "svg"):
        raise BadInputError(f"--format must be png or svg, got {fmt!r}")
    plt = _pyplot()
    out_dir = Path(directory)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"--png {out_dir}: is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sec in report["sections"]:
        for fig in sec.get("figures") or []:
            mpl_fig = draw(plt, fig)
            buffer = io.BytesIO()
            mpl_fig.savefig(buffer, format=fmt, dpi=120, bbox_inches="tight")
            plt.close(mpl_fig)
            path = out_dir / figure_file_name(fig["id"], fmt)
            with atomic_write(path) as f:
                f.write(buffer.getvalue())
            written.append(path)
    return written


def draw(plt, fig: dict):
    """A matplotlib figure of one figure's data (bands, lines, bars, error bars, flags)."""
    mpl_fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colours: dict[str, str] = {}

    def colour(name: str) -> str:
        return colours.setdefault(name.split(": ")[0], PALETTE[len(colours) % len(PALETTE)])

    categories: list = []

    def xs(values: list) -> list:
        if fig.get("x_type") != "category":
            return values
        for v in values:
            if v not in categories:
                categories.append(v)
        return [categories.index(v) for v in values]

    bottoms: dict = {}
    for t in fig["traces"]:
        if t["mode"] == "band":
            grey = t.get("role") == "noise_floor"
            ax.fill_between(xs(t["x"]), t["low"], t["high"], color="#888888" if grey else colour(t["name"]),
                            alpha=0.18 if grey else 0.22, linewidth=0, label=t["name"])
        elif t["mode"] == "bar":
            x = xs(t["x"])
            base = [bottoms.get(v, 0.0) for v in x] if fig["kind"] == "stacked_bars" else None
            widths = 0.8 if fig.get("x_type") == "category" or len(x) < 2 else \
                0.8 * min(abs(b - a) for a, b in zip(sorted(x), sorted(x)[1:]) if b != a) if len(set(x)) > 1 else 0.8
            ax.bar(x, t["y"], bottom=base, width=widths, label=t["name"], color=colour(t["name"]))
            if base is not None:
                for v, y, b in zip(x, t["y"], base):
                    bottoms[v] = b + y
        else:
            style = "--" if t.get("role") == "limit" else "-"
            marker = "o" if "markers" in t["mode"] else None
            line = style if "lines" in t["mode"] else "none"
            c = "#444444" if t.get("role") == "limit" else colour(t["name"])
            err = {}
            for axis, key in (("error_x", "xerr"), ("error_y", "yerr")):
                if axis in t:
                    err[key] = [t[axis]["minus"], t[axis]["plus"]]
            if err:
                ax.errorbar(xs(t["x"]), t["y"], fmt=(marker or "") + ("-" if line != "none" else ""), color=c,
                            label=t["name"], capsize=2, **err)
            else:
                ax.plot(xs(t["x"]), t["y"], linestyle=line, marker=marker, color=c, label=t["name"], markersize=4)
            if fig["kind"] == "plane" and t.get("labels"):
                for x, y, text in zip(t["x"], t["y"], t["labels"]):
                    ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if fig.get("flags"):
        ax.scatter(xs([f["x"] for f in fig["flags"]]), [f["y"] for f in fig["flags"]], marker="x", s=80,
                   color="#d62728", label="feature spaces disagree", zorder=5)
    if fig["kind"] == "fd_vs_n" and fig.get("n_used"):
        ax.axvline(fig["n_used"], linestyle=":", color="#2ca02c")
    if fig.get("x_type") == "log":
        ax.set_xscale("log")
    if categories:
        ax.set_xticks(range(len(categories)), [str(c) for c in categories], rotation=30, ha="right", fontsize=8)
    ax.set_title(fig["title"], fontsize=10)
    ax.set_xlabel(fig["x_title"])
    ax.set_ylabel(fig["y_title"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    mpl_fig.tight_layout()
    return mpl_fig
