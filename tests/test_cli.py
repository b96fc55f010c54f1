"""The command line, end to end on generated folders, archives and arrays."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fidkit
from fidkit.cli import main

from helpers import smooth_images


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_fid_json_matches_the_api(capsys, folders, weights, folders_fid):
    a, b = folders
    code, out, err = _run(capsys, "fid", a, b, "--weights", weights, "--device", "cpu", "--json")
    assert code == 0
    record = json.loads(out)
    assert {"fid", "n_a", "n_b", "mode"} <= set(record)
    assert (record["n_a"], record["n_b"], record["mode"]) == (10, 12, "tf")
    assert record["fid"] == pytest.approx(folders_fid().fid, rel=1e-12)
    assert "below 2048" in err  # warnings go to stderr, stdout stays one JSON object


@pytest.mark.slow
def test_human_output_names_settings(capsys, folders, weights):
    a, b = folders
    code, out, _ = _run(capsys, "fid", a, b, "--weights", weights, "--device", "cpu", "--mode", "clean", "--quiet")
    assert code == 0
    assert out.startswith("FID: ") and "(N=10)" in out and "(N=12)" in out and "mode: clean" in out


@pytest.mark.slow
def test_log_appends_one_line_per_run(capsys, folders, weights, tmp_path):
    a, b = folders
    log = tmp_path / "evals.jsonl"
    for limit in ("5", "8"):
        assert _run(capsys, "fid", a, b, "--weights", weights, "--device", "cpu", "--limit", limit, "--quiet",
                    "--log", log)[0] == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["n_a"], r["n_b"]) for r in lines] == [(5, 5), (8, 8)]
    assert all("time" in r and "fid" in r for r in lines)


@pytest.mark.slow
def test_stats_file_and_name_are_reusable(capsys, folders, weights, tmp_path, folders_fid):
    a, b = folders
    ref = tmp_path / "ref.npz"
    code, out, _ = _run(capsys, "stats", a, "-o", ref, "--name", "myref", "--weights", weights, "--device", "cpu")
    assert code == 0 and ref.is_file() and "N=10" in out
    direct = folders_fid().fid  # equal to the CLI's own value: test_fid_json_matches_the_api
    for real in (ref, "myref"):
        code, out, _ = _run(capsys, "fid", real, b, "--weights", weights, "--device", "cpu", "--json")
        assert code == 0 and json.loads(out)["fid"] == pytest.approx(direct, rel=1e-9)


@pytest.mark.slow
def test_archives_and_arrays(capsys, folders, weights, tmp_path, folders_fid):
    a, b = folders
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        for p in sorted(b.iterdir()):
            z.write(p, p.name)
    np.savez(tmp_path / "b.npz", arr_0=np.stack([np.asarray(__import__("PIL.Image").Image.open(p))
                                                 for p in sorted(b.iterdir())]))
    values = [folders_fid().fid]  # the folder b itself; the CLI gives the API's value (test_fid_json_matches_the_api)
    for fake in (tmp_path / "b.zip", tmp_path / "b.npz"):
        code, out, _ = _run(capsys, "fid", a, fake, "--weights", weights, "--device", "cpu", "--json")
        assert code == 0
        values.append(json.loads(out)["fid"])
    assert values[1] == pytest.approx(values[0], rel=1e-9) and values[2] == pytest.approx(values[0], rel=1e-9)


@pytest.mark.slow
def test_errors_have_exit_codes_and_messages(capsys, folders, weights, tmp_path):
    a, b = folders
    code, _, err = _run(capsys, "fid", a, tmp_path / "missing", "--weights", weights)
    assert code == 2 and "missing: no such file" in err
    code, _, err = _run(capsys, "fid", a, b)  # no weights, offline
    assert code == 4 and "weights-inception-2015-12-05-6726825d.pth" in err and "--weights" in err
    _run(capsys, "stats", a, "-o", tmp_path / "clean.npz", "--mode", "clean", "--weights", weights, "--device", "cpu")
    code, _, err = _run(capsys, "fid", tmp_path / "clean.npz", b, "--mode", "tf", "--weights", weights,
                        "--device", "cpu")
    assert code == 3 and "preprocessing mode" in err and "--force" in err
    code, out, _ = _run(capsys, "fid", tmp_path / "clean.npz", b, "--mode", "tf", "--force", "--weights", weights,
                        "--device", "cpu", "--json")
    assert code == 0 and "compared anyway" in " ".join(json.loads(out)["warnings"])
    code, _, err = _run(capsys, "stats", a, "--weights", weights)
    assert code == 2 and "-o FILE.npz" in err


@pytest.mark.slow
def test_module_entry_point_runs_in_a_fresh_process(weights, tmp_path):
    np.save(tmp_path / "a.npy", smooth_images(3, 32, seed=1))
    np.save(tmp_path / "b.npy", smooth_images(3, 32, seed=2))
    env = dict(os.environ, FIDKIT_INCEPTION_WEIGHTS=weights)
    proc = subprocess.run([sys.executable, "-m", "fidkit", "fid", tmp_path / "a.npy", tmp_path / "b.npy", "--json",
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_a"] == 3


def test_extractors_lists_every_registered_network_with_its_kind_and_weights(capsys):
    from fidkit.extractors import specs
    assert main(["extractors"]) == 0
    out = capsys.readouterr().out
    heads = {line.split(" ")[0].rstrip(":"): line for line in out.splitlines() if not line.startswith(" ")}
    assert set(heads) == {s.name for s in specs()}
    for s in specs():
        assert ("[videos]" in heads[s.name]) == (s.modality == "video")
        if s.weights is not None:
            assert s.weights.sha256 in out and s.weights.url in out
    assert "fvd (= fd)" in heads["i3d"]
