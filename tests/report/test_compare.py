"""fidkit.report.compare / 'fidkit compare': a clearly different pair is distinguishable, two runs of one
distribution are not, and results that measure different things are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fidkit
from fidkit.cli import main
from fidkit.errors import IncomparableStatsError
from fidkit.report import compare


def _features(tmp_path, name: str, n: int, shift: float, seed: int) -> str:
    path = tmp_path / f"{name}.npy"
    np.save(path, np.random.default_rng(seed).normal(size=(n, 6)) + shift)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ab")
    ref = _features(tmp, "ref", 600, 0.0, 0)

    def run(name, shift, seed):
        return fidkit.evaluate(ref, _features(tmp, name, 300, shift, seed), metrics="fid,noise_floor,pr",
                               bootstrap=200, seed=1).to_dict()
    return {"same1": run("same1", 0.0, 1), "same2": run("same2", 0.0, 2), "far": run("far", 0.6, 3)}


def test_a_clearly_different_run_is_distinguishable(runs):
    report = compare(runs["same1"], runs["far"])
    fid = report["metrics"]["fid"]
    assert report["comparable"] and fid["distinguishable"]
    assert fid["intervals_overlap"] is False and fid["exceeds_noise_floor"] is True
    assert fid["difference"] == pytest.approx(runs["far"]["fid"] - runs["same1"]["fid"])


def test_two_runs_of_one_distribution_are_not(runs):
    report = compare(runs["same1"], runs["same2"])
    assert not any(m["distinguishable"] for m in report["metrics"].values())
    assert {"fid", "precision", "recall"} <= set(report["metrics"])
    assert "fid_mean_term" not in report["metrics"] and "noise_floor" not in report["metrics"]


def test_without_intervals_or_a_floor_nothing_is_claimed(runs):
    a, b = (dict(runs[k]) for k in ("same1", "far"))
    for r in (a, b):
        for key in [k for k in r if k.endswith("_ci") or k.startswith("noise_floor")]:
            del r[key]
    m = compare(a, b)["metrics"]["fid"]
    assert not m["distinguishable"] and "--bootstrap" in m["reason"]


def test_results_of_another_reference_are_refused_unless_forced(runs):
    other = dict(runs["far"], a="elsewhere.npy")
    with pytest.raises(IncomparableStatsError, match="reference"):
        compare(runs["same1"], other)
    report = compare(runs["same1"], other, force=True)
    assert not report["comparable"] and not report["metrics"]["fid"]["distinguishable"]


def test_cli_compare_prints_each_metric(runs, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.jsonl"
    a.write_text(json.dumps(runs["same1"]))
    b.write_text(json.dumps(runs["same2"]) + "\n" + json.dumps(runs["far"]) + "\n")   # a --log: the last line
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "fid" in out and " distinguishable" in out
    assert main(["compare", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["fid"]["distinguishable"] is True
    (tmp_path / "c.json").write_text(json.dumps(dict(runs["far"], a="other")))
    assert main(["compare", str(a), str(tmp_path / "c.json")]) == 3
