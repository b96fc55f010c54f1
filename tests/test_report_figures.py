"""The data of the report's figures, from result dicts: points, bands, flags, omitted sections; loading of logs and
results; the A/B fallback; the CLI writing the page, its sidecar and PNG files."""

from __future__ import annotations

import json

import pytest

from fidkit.errors import BadInputError
from fidkit.report.figures import build_report, family, metric_keys, x_axis
from fidkit.report.runs import Series, load_series, read_results
from report_results import examples, result, sweep


def _section(report: dict, sid: str) -> dict:
    return next(s for s in report["sections"] if s["id"] == sid)


def _figure(section: dict, fid: str) -> dict:
    return next(f for f in section["figures"] if f["id"] == fid)


def _trace(fig: dict, role: str) -> dict:
    return next(t for t in fig["traces"] if t.get("role") == role)


def test_result_keys_name_their_metric_and_feature_space():
    assert family("fid") == ("fd", "")
    assert family("fd_dinov2") == ("fd", "dinov2")
    assert family("fd_inf_dinov2") == ("fd_inf", "dinov2")
    assert family("precision_clip_vitl14") == ("precision", "clip_vitl14")
    assert family("fvd") == ("fd", "i3d")
    assert family("noise_floor_dinov2") == ("noise_floor", "dinov2")
    r = result(fid=5.0, fid_inf=4.0, terms=True)
    # details (intervals, spreads, fit data, FD terms) are not metrics of their own
    assert metric_keys([r]) == ["fid", "kid", "precision", "recall", "density", "coverage", "fid_inf", "noise_floor"]


def test_x_axis_is_step_else_name_else_order():
    assert x_axis([{"step": 5}, {"step": 10}]) == ("step", [5, 10])
    assert x_axis([{"name": "a"}, {"name": "b"}]) == ("name", ["a", "b"])
    assert x_axis([{"step": 5}, {"name": "b"}]) == ("order", [0, 1])


def test_curves_hold_every_point_the_interval_band_and_the_noise_floor_band():
    runs = sweep(4)
    report = build_report([Series("train", runs)])
    fig = _figure(_section(report, "curves"), "curve-fid")
    values = _trace(fig, "value")
    assert values["x"] == [0, 1000, 2000, 3000]
    assert values["y"] == [r["fid"] for r in runs]
    band = _trace(fig, "interval")
    assert band["low"] == [r["fid_ci"][0] for r in runs] and band["high"] == [r["fid_ci"][1] for r in runs]
    floor = _trace(fig, "noise_floor")
    assert floor["low"] == [0.0] * 4 and floor["high"] == [r["noise_floor"] for r in runs]
    # the noise floor belongs to Fréchet distances only
    assert not any(t.get("role") == "noise_floor" for t in _figure(_section(report, "curves"), "curve-kid")["traces"])
    # a tooltip names the checkpoint and the value
    assert "step 1000" in values["text"][1] and "fid = 25" in values["text"][1]


def test_a_point_missing_a_metric_is_left_out_not_zeroed():
    runs = sweep(3, ci=None, noise_floor=None)
    del runs[1]["fid"]
    fig = _figure(_section(build_report([Series("s", runs)]), "curves"), "curve-fid")
    assert _trace(fig, "value")["x"] == [0, 2000]
    assert [t["role"] for t in fig["traces"]] == ["value"]


def test_feature_spaces_moving_in_opposite_directions_are_flagged():
    dino = [50.0, 45.0, 47.0, 40.0]       # fid falls at every step; FD-DINOv2 rises at step 2 only
    runs = [result(fid=30.0 - 5 * i, step=i, fd_dinov2=d) for i, d in enumerate(dino)]
    curves = _section(build_report([Series("s", runs)]), "curves")
    assert [(f["x"], f["keys"]) for f in curves["flags"]] == [(2, ["fid", "fd_dinov2"])]
    assert curves["flags"][0]["changes"] == [-5.0, 2.0]
    flagged = _figure(curves, "curve-fd_dinov2")["flags"]
    assert [(f["x"], f["y"]) for f in flagged] == [(2, 47.0)]


def test_sections_without_their_keys_are_omitted_with_a_note():
    report = build_report([Series("s", sweep(3))])
    notes = {s["id"]: s["note"] for s in report["sections"]}
    assert "K_mean_term" in notes["decomposition"]
    assert "fid_inf" in notes["fd_vs_n"]
    assert "--keep-examples" in notes["samples"]
    assert "two results" in notes["ab"]
    assert notes["curves"] is None and notes["fidelity_diversity"] is None and notes["provenance"] is None
    for sid in ("decomposition", "fd_vs_n", "samples", "ab"):
        assert not _section(report, sid).get("figures")


def test_decomposition_stacks_the_two_terms_per_checkpoint():
    runs = sweep(3, terms=True)
    fig = _figure(_section(build_report([Series("s", runs)]), "decomposition"), "decomposition-fid-s")
    mean, cov = _trace(fig, "mean_term"), _trace(fig, "cov_term")
    assert mean["y"] == [r["fid_mean_term"] for r in runs] and cov["y"] == [r["fid_cov_term"] for r in runs]
    assert [m + c for m, c in zip(mean["y"], cov["y"])] == pytest.approx([r["fid"] for r in runs])


def test_fidelity_diversity_planes_trace_the_checkpoints_with_interval_bars():
    runs = sweep(3)
    sec = _section(build_report([Series("s", runs)]), "fidelity_diversity")
    pr = _trace(_figure(sec, "plane-precision"), "value")
    assert pr["x"] == [r["recall"] for r in runs] and pr["y"] == [r["precision"] for r in runs]
    assert pr["error_y"]["minus"] == pytest.approx([0.05] * 3) and pr["error_x"]["plus"] == pytest.approx([0.05] * 3)
    dc = _trace(_figure(sec, "plane-density"), "value")
    assert dc["x"] == [r["coverage"] for r in runs] and "error_x" not in dc   # no intervals stored for coverage


def test_fd_vs_n_draws_the_subset_scores_the_fit_its_limit_and_the_run_n():
    r = result(fid=12.0, fid_inf=4.0, n=60)
    sec = _section(build_report([Series("s", [r])]), "fd_vs_n")
    fig = sec["figures"][0]
    assert _trace(fig, "subset")["x"] == r["fid_inf_sizes"] and _trace(fig, "subset")["y"] == r["fid_inf_scores"]
    fit = _trace(fig, "fit")
    # the fitted curve is a + b/N with the stored a and b
    assert fit["y"] == pytest.approx([4.0 + 300.0 / n for n in fit["x"]])
    assert _trace(fig, "limit")["y"] == [4.0, 4.0]
    assert _trace(fig, "run")["x"] == [60] and _trace(fig, "run")["y"] == [12.0] and fig["n_used"] == 60
    assert sec["note"] is None


def test_fd_vs_n_without_per_n_scores_draws_the_limit_and_says_so():
    r = result(fid=12.0, fid_inf=4.0)
    del r["fid_inf_scores"], r["fid_inf_slope"]
    sec = _section(build_report([Series("s", [r])]), "fd_vs_n")
    assert "per-N scores" in sec["note"]
    assert [t["role"] for t in sec["figures"][0]["traces"]] == ["limit", "run"]


def test_fd_vs_n_refits_the_slope_when_only_the_scores_are_stored():
    r = result(fid=12.0, fid_inf=4.0)
    del r["fid_inf_slope"]
    fit = _trace(_section(build_report([Series("s", [r])]), "fd_vs_n")["figures"][0], "fit")
    assert fit["y"] == pytest.approx([4.0 + 300.0 / n for n in fit["x"]])


def test_samples_keep_inline_thumbnails_only_and_cap_counts():
    r = result(fid=5.0)
    ex = examples(grid=8)
    ex["grid"] = ex["grid"] * 20 + ["https://example.com/x.png", "javascript:alert(1)"]
    r["examples"] = ex
    images = _section(build_report([Series("s", [r])]), "samples")["images"]
    assert len(images["grid"]) == 64 and all(t.startswith("data:image/png;base64,") for t in images["grid"])
    assert [it["index"] for it in images["most_realistic"]] == [0, 1, 2]
    assert [it["near_copy"] for it in images["nearest"]] == [True, False, False, False]
    assert images["nearest"][1]["neighbours"][0]["distance"] == 1.5
    directions = _section(build_report([Series("s", [r])]), "decomposition")["images"]["directions"]
    assert len(directions) == 2 and len(directions[0]["low"]) == 3


def test_provenance_card_carries_network_weights_n_and_verdict():
    r = result(fid=5.0)
    r["verdict"] = {"protocol": "clean-fid", "comparable": False, "summary": "not comparable",
                    "deviations": ["weights differ"]}
    card = _section(build_report([Series("s", [r])]), "provenance")["cards"][0]
    assert card["network"] == "inception-2015-12-05" and card["weights_sha256"] == r["weights_sha256"]
    assert (card["n_reference"], card["n_generated"], card["preprocessing"]) == (60, 60, "tf")
    assert card["verdict"] == {"protocol": "clean-fid", "comparable": False, "summary": "not comparable",
                               "deviations": ["weights differ"]}


def test_results_against_other_references_get_no_ab_differences():
    """fidkit.report.compare refuses runs that measure different things; the section says so instead of bars."""
    a, b = result(fid=10.0, name="A"), result(fid=13.0, name="B")
    b["a"] = "/data/other-real"
    sec = _section(build_report([Series("runs", [a, b])]), "ab")
    assert sec["note"].startswith("not compared:") and "reference" in sec["note"]
    assert not sec.get("figures") and not sec.get("tables")


def test_two_results_make_an_ab_section():
    report = build_report([Series("runs", [result(fid=10.0, name="A"), result(fid=13.0, name="B")])])
    sec = _section(report, "ab")
    assert sec["note"] is None
    table = sec["tables"][0]
    row = next(r for r in table["rows"] if r[0] == "fid")
    assert row[table["columns"].index("difference")] == 3.0


def test_logs_and_single_results_load_as_series(tmp_path):
    log = tmp_path / "train.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in sweep(3)) + '{"fid": 1')   # a line being written
    one, two = tmp_path / "a.json", tmp_path / "b.json"
    one.write_text(json.dumps(result(fid=1.0)))
    two.write_text(json.dumps(result(fid=2.0)))
    series = load_series([log, one, two])
    assert [(s.name, len(s.records)) for s in series] == [("train", 3), ("runs", 2)]
    assert [r["name"] for r in series[1].records] == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"fid": 1}\nnot json\n{"fid": 2}\n')
    with pytest.raises(BadInputError, match="bad.jsonl, line 2"):
        read_results(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(BadInputError, match="empty.json: is empty"):
        read_results(empty)


def test_cli_report_writes_page_sidecar_and_figures(tmp_path):
    pytest.importorskip("plotly")
    pytest.importorskip("matplotlib")
    from fidkit.cli import main
    log = tmp_path / "train.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in sweep(3, terms=True)))
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(log), "-o", str(out), "--png", str(tmp_path / "png")]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in page
    # nothing is loaded from elsewhere (plotly.js itself mentions URLs in its code; the browser tests check that
    # no request leaves the page)
    assert "<script src" not in page and "<link" not in page and 'src="http' not in page
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["id"] for s in data["sections"]] == ["curves", "decomposition", "fidelity_diversity", "fd_vs_n",
                                                   "samples", "provenance", "ab"]
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    n_figures = sum(len(s.get("figures") or []) for s in data["sections"])
    assert len(pngs) == n_figures and "curve-fid.png" in pngs
    assert (tmp_path / "png" / "curve-fid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(log), "--png", str(tmp_path / "svg"), "--format", "svg"]) == 0
    assert (tmp_path / "svg" / "curve-fid.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_fd_infinity_result_keeps_its_subset_scores_and_slope():
    """What the FD-vs-N chart draws: the stored slope and limit are the least-squares line through the stored
    per-N scores (refitted here with numpy.polyfit on 1/N)."""
    import warnings

    import numpy as np

    from fidkit.metrics.catalog import METRICS, Inputs, MetricOptions
    from fidkit.stats.moments import FeatureStats
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(80, 6)), rng.normal(0.3, 1.2, size=(60, 6))
    x = Inputs(real_stats=FeatureStats.from_features(real), real_features=real, fake_stats=None,
               fake_features=fake, fake_n=60, options=MetricOptions())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = METRICS["fd_inf"].compute(x)
    sizes, scores = np.array(out["fd_inf_sizes"], float), np.array(out["fd_inf_scores"])
    assert len(sizes) == len(scores) == 15
    slope, intercept = np.polyfit(1.0 / sizes, scores, 1)
    assert out["fd_inf_slope"] == pytest.approx(slope, rel=1e-9)
    assert out["fd_inf"] == pytest.approx(intercept, rel=1e-9)
