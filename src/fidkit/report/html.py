"""One self-contained HTML page of a report: plotly.js inlined (no CDN, no server, opens from disk, tooltips on
every point), thumbnails as data URIs, and a JSON sidecar with the data of every figure.

plotly is an optional extra (``pip install 'fidkit[report]'``), imported only here, only when a page is written.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fidkit._io import atomic_write, write_target
from fidkit.errors import BadInputError
from fidkit.report.figures import build_report
from fidkit.report.runs import Series

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def require_plotly() -> None:
    """Refuse early, naming the extra, when plotly is not installed."""
    import importlib.util
    if importlib.util.find_spec("plotly") is None:
        raise BadInputError("fidkit report needs plotly: pip install 'fidkit[report]'")


def plotly_js() -> str:
    """The plotly.js bundle shipped inside the plotly package (no download)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise BadInputError("fidkit report needs plotly: pip install 'fidkit[report]'") from None
    return get_plotlyjs()


def sidecar_path(out: str | Path) -> Path:
    """``report.html`` -> ``report.json`` (``x.json`` -> ``x.json.json``: never the page itself)."""
    p = Path(out)
    side = p.with_suffix(".json")
    return side if side != p else p.with_name(p.name + ".json")


def write_report(series: list[Series], out: str | Path, *, ab: tuple[dict, dict] | None = None,
                 title: str = "fidkit report") -> dict:
    """Write the page ``out`` and its sidecar (both atomically); return the report data."""
    write_target(out, "-o")
    write_target(sidecar_path(out), "the report's JSON sidecar")
    js = plotly_js()                          # before anything is written: a missing extra writes nothing
    report = build_report(series, ab=ab, title=title)
    page = render_page(report, js)
    with atomic_write(sidecar_path(out), "w") as f:
        json.dump(report, f, indent=1, default=_jsonable)
    with atomic_write(out, "w") as f:
        f.write(page)
    return report


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) or hasattr(v, "item"):
        return float(v)
    return str(v)


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element (no closing tag, no comment opener)."""
    text = json.dumps(data, default=_jsonable, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e")
    return text.replace("&", "\\u0026")


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


# ---------------------------------------------------------------------------------------------------- plotly

def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def plotly_figure(fig: dict) -> dict:
    """A figure's data as plotly traces and layout."""
    data: list[dict] = []
    colours: dict[str, str] = {}

    def colour(name: str) -> str:
        base = name.split(": ")[0]
        return colours.setdefault(base, PALETTE[len(colours) % len(PALETTE)])

    for t in fig["traces"]:
        if t["mode"] == "band":
            c = "#888888" if t.get("role") == "noise_floor" else colour(t["name"])
            alpha = 0.18 if t.get("role") == "noise_floor" else 0.22
            data.append({"type": "scatter", "x": t["x"], "y": t["low"], "mode": "lines", "line": {"width": 0},
                         "hoverinfo": "skip", "showlegend": False, "legendgroup": t["name"]})
            data.append({"type": "scatter", "x": t["x"], "y": t["high"], "mode": "lines", "line": {"width": 0},
                         "fill": "tonexty", "fillcolor": _rgba(c, alpha), "name": t["name"], "hoverinfo": "skip",
                         "legendgroup": t["name"]})
        elif t["mode"] == "bar":
            data.append({"type": "bar", "x": t["x"], "y": t["y"], "name": t["name"], "text": t.get("text"),
                         "textposition": "none", "hovertemplate": "%{text}<extra></extra>"})
        else:
            trace = {"type": "scatter", "x": t["x"], "y": t["y"], "mode": t["mode"], "name": t["name"],
                     "text": t.get("text"), "hovertemplate": "%{text}<extra></extra>"}
            if t.get("role") in ("value", "subset", "run"):
                trace["marker"] = {"size": 8, "color": colour(t["name"])}
                trace["line"] = {"color": colour(t["name"])}
            if t.get("role") == "limit":
                trace["line"] = {"dash": "dash", "color": "#444"}
            for axis in ("error_x", "error_y"):
                if axis in t:
                    trace[axis] = {"type": "data", "symmetric": False, "array": t[axis]["plus"],
                                   "arrayminus": t[axis]["minus"], "thickness": 1}
            data.append(trace)
    if fig.get("flags"):
        data.append({"type": "scatter", "mode": "markers", "name": "feature spaces disagree",
                     "x": [f["x"] for f in fig["flags"]], "y": [f["y"] for f in fig["flags"]],
                     "text": [f["text"] for f in fig["flags"]], "hovertemplate": "%{text}<extra></extra>",
                     "marker": {"symbol": "x", "size": 14, "color": "#d62728", "line": {"width": 2}}})
    layout: dict[str, Any] = {"title": {"text": _e(fig["title"]), "font": {"size": 14}, "x": 0.01,
                                        "xanchor": "left"},   # left: clear of the tool bar
                              "xaxis": {"title": {"text": _e(fig["x_title"])}, "type": fig.get("x_type", "linear")},
                              "yaxis": {"title": {"text": _e(fig["y_title"])}},
                              "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 340,
                              "legend": {"orientation": "h", "y": -0.25}, "hovermode": "closest"}
    if fig["kind"] == "stacked_bars":
        layout["barmode"] = "stack"
    if fig["kind"] == "fd_vs_n" and fig.get("n_used"):
        layout["shapes"] = [{"type": "line", "x0": fig["n_used"], "x1": fig["n_used"], "yref": "paper", "y0": 0,
                             "y1": 1, "line": {"dash": "dot", "color": "#2ca02c"}}]
    return {"data": data, "layout": layout}


# ---------------------------------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
nav{padding:6px 24px;background:#eceff1;font-size:13px}nav a{margin-right:14px;color:#1f4e79}
section{background:#fff;margin:14px 24px;padding:10px 18px;border-radius:6px;box-shadow:0 1px 3px #0002}
h2{font-size:17px;margin:6px 0}p.desc{font-size:13px;color:#555;max-width:70em}
p.note{font-size:13px;color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:10px}
.thumbs img{width:64px;height:64px;margin:2px;image-rendering:pixelated;border:1px solid #ddd}
.thumb{display:inline-block;text-align:center;font-size:11px;margin:2px}
.copy img{border:3px solid #d62728}table{border-collapse:collapse;font-size:12px;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
.card{display:inline-block;vertical-align:top;margin:6px;max-width:44em}.bad{color:#b00}.good{color:#070}
code{font-size:12px;word-break:break-all}
"""


def render_page(report: dict, js: str) -> str:
    figures: dict[str, dict] = {}
    body = []
    for sec in report["sections"]:
        body.append(_section_html(sec, figures))
    nav = " ".join(f'<a href="#{_e(s["id"])}">{_e(s["title"])}</a>' for s in report["sections"])
    series = ", ".join(f'{_e(s["name"])} ({s["records"]} result{"s" * (s["records"] != 1)}'
                       + (f', {s["dropped"]} older left out' if s["dropped"] else "") + ")" for s in report["series"])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f'style-src \'unsafe-inline\'; script-src \'unsafe-inline\' \'unsafe-eval\'; font-src data:">'
            f"<title>{_e(report['title'])}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{_e(report['title'])}</h1><div>{series}</div></header><nav>{nav}</nav>"
            + "".join(body)
            + f"<script>{js}</script>"
            + f'<script id="fidkit-figures" type="application/json">{_script_json(figures)}</script>'
            + "<script>(function(){var F=JSON.parse(document.getElementById('fidkit-figures').textContent);"
              "for(var id in F){Plotly.newPlot(id,F[id].data,F[id].layout,"
              "{displaylogo:false,responsive:true});}window.fidkitReady=true;})();</script>"
            + "</body></html>")


def _section_html(sec: dict, figures: dict[str, dict]) -> str:
    out = [f'<section id="{_e(sec["id"])}" data-section="{_e(sec["id"])}"><h2>{_e(sec["title"])}</h2>'
           f'<p class="desc">{_e(sec["description"])}</p>']
    if sec.get("note"):
        out.append(f'<p class="note">{_e(sec["note"])}</p>')
    if sec.get("figures"):
        out.append('<div class="figs">')
        for i, fig in enumerate(sec["figures"]):
            div = f"fig-{sec['id']}-{i}"
            figures[div] = plotly_figure(fig)
            points = sum(len(t["x"]) for t in fig["traces"] if t.get("role") in ("value", "subset", "difference",
                                                                                    "mean_term", "cov_term"))
            out.append(f'<div class="figure" id="{div}" data-figure="{_e(fig["id"])}" data-points="{points}"></div>')
        out.append("</div>")
    if sec.get("flags"):
        out.append("<p class=\"desc\"><b>Feature spaces disagree:</b></p><ul class=\"flags\">" + "".join(
            f'<li>{_e(f["series"])}, {_e(f["x"])}: {_e(f["text"])}</li>' for f in sec["flags"][:50]) + "</ul>")
    images = sec.get("images") or {}
    if sec["id"] == "decomposition" and images.get("directions"):
        out.append(_directions_html(images["directions"]))
    if sec["id"] == "samples" and images:
        out.append(_samples_html(images))
    for table in sec.get("tables") or []:
        out.append(_table_html(table))
    for card in sec.get("cards") or []:
        out.append(_card_html(card))
    out.append("</section>")
    return "".join(out)


def _img(src: str, caption: str = "", cls: str = "") -> str:
    return (f'<span class="thumb {cls}"><img src="{_e(src)}" alt="{_e(caption)}" title="{_e(caption)}">'
            f"<br>{_e(caption)}</span>")


def _directions_html(directions: list[dict]) -> str:
    rows = []
    for i, d in enumerate(directions):
        explained = d.get("explained")
        head = f"direction {i + 1}: eigenvalue {_e(d.get('eigenvalue'))}" + (
            f", {float(explained):.1%} of the difference" if isinstance(explained, (int, float)) else "")
        rows.append(f'<tr><td>{head}</td><td class="thumbs">' + "".join(_img(t) for t in d["low"])
                    + '</td><td class="thumbs">' + "".join(_img(t) for t in d["high"]) + "</td></tr>")
    return ('<h3>Top directions of the covariance difference</h3><table class="directions"><tr><th></th>'
            "<th>low end</th><th>high end</th></tr>" + "".join(rows) + "</table>")


def _samples_html(im: dict) -> str:
    out = [f'<p class="desc">feature space: {_e(im.get("space"))}; from result {_e(im.get("from"))}</p>']
    if im.get("grid"):
        out.append('<h3>Sample grid</h3><div class="thumbs grid">' + "".join(_img(t) for t in im["grid"]) + "</div>")
    for which, title in (("most_realistic", "Most realistic"), ("least_realistic", "Least realistic")):
        if im.get(which):
            out.append(f'<h3>{title}</h3><div class="thumbs {which.replace("_", "-")}">' + "".join(
                _img(it["thumb"], f"#{it['index']} score {_num(it['score'])}") for it in im[which]) + "</div>")
    if im.get("nearest"):
        out.append(f'<h3>Nearest reference images</h3><p class="desc">near-copy threshold: '
                   f'{_num(im.get("near_copy_threshold"))}; a red frame marks a near copy</p><table class="nearest">')
        for it in im["nearest"]:
            cls = "copy" if it["near_copy"] else ""
            out.append(f'<tr class="{"near-copy" if it["near_copy"] else ""}"><td class="thumbs">'
                       + _img(it["thumb"], f"generated #{it['index']}" + (" NEAR COPY" if it["near_copy"] else ""),
                              cls)
                       + '</td><td class="thumbs">' + "".join(
                           _img(n["thumb"], f"ref #{n['ref_index']} d={_num(n['distance'])}") for n in it["neighbours"])
                       + "</td></tr>")
        out.append("</table>")
    return "".join(out)


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else _e(v)


def _table_html(table: dict) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table["columns"])
    rows = "".join("<tr>" + "".join(f"<td>{_num(v)}</td>" for v in row) + "</tr>" for row in table["rows"])
    return f'<p class="desc"><b>{_e(table["title"])}</b></p><table class="ab">{"<tr>" + head + "</tr>"}{rows}</table>'


def _card_html(c: dict) -> str:
    v = c.get("verdict")
    if v is None:
        verdict = "no verdict recorded"
    else:
        ok = v.get("comparable")
        verdict = (f'<span class="{"good" if ok else "bad"}">{"comparable" if ok else "not comparable"}</span> '
                   f'with {_e(v.get("protocol") or "no protocol")}: {_e(v.get("summary"))}'
                   + "".join(f"<br>– {_e(d)}" for d in v.get("deviations") or []))
    spaces = "".join(f"<tr><td>{_e(k)}</td><td>{_e(s.get('extractor'))} / {_e(s.get('layer'))}, "
                     f"{_e(s.get('preprocessing'))}, weights <code>{_e(s.get('weights_sha256'))}</code>"
                     f"{'' if s.get('published_weights') is not False else ' <b class=bad>(not the published file)</b>'}"
                     "</td></tr>" for k, s in c["feature_spaces"].items() if isinstance(s, dict))
    rows = [("network", f"{_e(c['network'])} / {_e(c['layer'])}"),
            ("weights sha256", f"<code>{_e(c['weights_sha256'])}</code>"),
            ("preprocessing", _e(c["preprocessing"])),
            ("N", f"reference {_e(c['n_reference'])}, generated {_e(c['n_generated'])}"),
            ("reference", _e(c["reference"])), ("generated", _e(c["generated"])),
            ("options", _e(", ".join(f"{k}={v}" for k, v in c["options"].items()))),
            ("fidkit", _e(c["fidkit_version"])), ("verdict", verdict)]
    warnings = "".join(f"<li>{_e(w)}</li>" for w in c["warnings"])
    return (f'<div class="card"><h3>{_e(c["series"])} (latest result)</h3><table class="provenance">'
            + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + spaces + "</table>"
            + (f"<details><summary>{len(c['warnings'])} warning(s)</summary><ul>{warnings}</ul></details>"
               if c["warnings"] else "") + "</div>")
