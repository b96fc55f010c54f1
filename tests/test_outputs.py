"""Outputs: targets checked before the computation, results never lost, files readable by a team."""

import json
import os
import stat

import pytest
import torch

import fidkit
from fidkit._io import atomic_write
from fidkit.cli import _append_log, main
from fidkit.errors import BadInputError, OutputError


def test_a_bad_log_or_output_target_is_refused_before_the_computation(folders, tmp_path, capsys, monkeypatch):
    a, b = folders
    import fidkit.cli as cli
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: pytest.fail("computed before checking --log"))
    monkeypatch.setattr(cli, "compute_reference", lambda *a, **k: pytest.fail("computed before checking -o"))
    assert main(["fid", str(a), str(b), "--log", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        if not os.access(tmp_path / "ro", os.W_OK):  # root writes anywhere
            assert main(["stats", str(a), "-o", str(tmp_path / "ro" / "x.npz")]) == 2
            assert "cannot write" in capsys.readouterr().err
    finally:
        os.chmod(tmp_path / "ro", 0o755)
    (tmp_path / "afile").write_text("")
    assert main(["stats", str(a), "-o", str(tmp_path / "afile" / "x.npz")]) == 2  # a file where a folder must be
    assert "cannot write in" in capsys.readouterr().err


@pytest.mark.slow
def test_when_writing_fails_after_the_computation_the_result_is_still_printed(folders, weights, tmp_path, capsys,
                                                                             monkeypatch):
    a, b = folders
    log = tmp_path / "log.jsonl"
    real_write = os.write

    def disk_full(fd, data):
        if os.fstat(fd).st_ino == os.stat(log).st_ino:
            real_write(fd, data[:10])  # a torn line, then the disk is full
            raise OSError(28, "No space left on device")
        return real_write(fd, data)
    log.write_text('{"earlier": 1}\n')
    monkeypatch.setattr(os, "write", disk_full)
    code = main(["fid", str(a), str(b), "--weights", weights, "--device", "cpu", "--json", "--log", str(log)])
    out, err = capsys.readouterr()
    assert code == 5
    assert "fid" in json.loads(out)  # the result reached the user
    assert "No space left" in err and "no partial line" in err
    assert log.read_text() == '{"earlier": 1}\n'  # earlier lines intact, no torn line


def test_log_lines_are_whole(tmp_path):
    log = tmp_path / "l.jsonl"
    for i in range(3):
        _append_log(str(log), {"i": i})
    assert [json.loads(line)["i"] for line in log.read_text().splitlines()] == [0, 1, 2]


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "shared.npz") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.npz").stat().st_mode) == 0o644


@pytest.mark.slow
def test_a_refused_state_leaves_the_evaluator_as_it_was(weights):
    from helpers import smooth_images
    ev = fidkit.Evaluator("fid,kid", weights=weights, device="cpu", kid_subset_size=4, kid_subsets=2)
    imgs = smooth_images(6, 32, seed=1)
    ev.update(imgs, real=True)
    ev.update(imgs[::-1].copy())
    before = ev.compute().values
    state = ev.state_dict()
    state["fake"]["features"]["inception/pool3"][0, 0] = float("nan")
    with pytest.raises(BadInputError, match="NaN"):
        ev.load_state_dict(state)
    bad = ev.state_dict()
    del bad["real"]["stats"]
    with pytest.raises(BadInputError, match="malformed"):
        ev.load_state_dict(bad)
    assert ev.compute().values == before


def test_negative_seed_and_bad_options_are_named():
    with pytest.raises(BadInputError, match="seed must be an integer of at least 0"):
        fidkit.evaluate(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, 3, 8, 8, dtype=torch.uint8),
                        seed=-1)
    assert issubclass(OutputError, fidkit.FidkitError)


@pytest.mark.slow
def test_a_checkpoint_with_an_invalid_co_moment_is_refused(weights):
    from helpers import smooth_images
    ev = fidkit.Evaluator("fid", weights=weights, device="cpu")
    ev.update(smooth_images(4, 32, seed=1), real=True)
    ev.update(smooth_images(4, 32, seed=2))
    state = ev.state_dict()
    m2 = state["fake"]["stats"]["inception/pool3"]["m2"]
    m2[0, 1] = m2[1, 0] + abs(float(m2.max())) + 1.0  # no longer symmetric
    with pytest.raises(BadInputError, match="statistics are invalid: the covariance is not symmetric"):
        ev.load_state_dict(state)
