"""Output targets (issue 16): nothing but a regular file is ever replaced, symbolic links are followed, the log's
folder must exist, and ``-o`` writes the name ``fidkit fid`` reads."""

import contextlib
import json
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest

import fidkit
import fidkit.cli as cli
import fidkit._io as io
from fidkit._io import atomic_write
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance


@pytest.fixture
def nothing_replaced(monkeypatch):
    """Whatever the code under test does, no rename may land on anything but a regular file or a new name: the
    device nodes these tests name (/dev/null, /dev/full) can never be damaged, even by a regressed fidkit."""
    real_replace, real_rename = os.replace, os.rename

    def guarded(real):
        def move(src, dst, *a, **k):
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(os.stat(dst).st_mode) or str(os.path.realpath(dst)).startswith("/dev/"):
                    raise AssertionError(f"renamed over {dst}, which is not a regular file")
            return real(src, dst, *a, **k)
        return move
    monkeypatch.setattr(os, "replace", guarded(real_replace))
    monkeypatch.setattr(os, "rename", guarded(real_rename))


def _special_targets(tmp_path):
    """Each kind of file that a rename would destroy, with the word the refusal must use."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    folder = tmp_path / "folder"
    folder.mkdir()
    targets = [(fifo, "fifo"), (sock_path, "socket"), (folder, "folder")]
    for dev in ("/dev/null", "/dev/full"):
        if os.path.exists(dev) and stat.S_ISCHR(os.stat(dev).st_mode):
            targets.append((Path(dev), "character device"))
    return targets, sock


def test_atomic_write_refuses_devices_fifos_sockets_and_folders_before_opening(tmp_path, nothing_replaced,
                                                                               monkeypatch):
    targets, sock = _special_targets(tmp_path)
    monkeypatch.setattr("tempfile.mkstemp", lambda *a, **k: pytest.fail("opened a temporary file first"))
    try:
        for target, word in targets:
            before = os.stat(target)
            with pytest.raises(BadInputError, match=word) as e:
                with atomic_write(target) as f:
                    f.write(b"x")
            assert str(target) in str(e.value)
            after = os.stat(target)
            assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
            # the same through a symbolic link, whose message names where the link leads
            link = tmp_path / f"link-to-{target.name}"
            link.symlink_to(target)
            with pytest.raises(BadInputError, match=f"{word}.*leads to {target}"):
                io.write_target(link)
            assert link.is_symlink()
    finally:
        sock.close()


def test_cli_refuses_a_special_output_before_the_computation(folders, tmp_path, nothing_replaced, capsys,
                                                             monkeypatch):
    a, _ = folders
    monkeypatch.setattr(cli, "compute_reference", lambda *a, **k: pytest.fail("computed before checking -o"))
    targets, sock = _special_targets(tmp_path)
    try:
        for target, word in targets:
            link = tmp_path / f"{target.name}.npz"
            link.symlink_to(target)
            for given in (str(target), str(link)):  # as named (no .npz suffix), and through a link
                assert main(["stats", str(a), "-o", given]) == 2
                err = capsys.readouterr().err
                assert word in err and given in err
            assert not Path(f"{target}.npz").exists() or Path(f"{target}.npz") == link
    finally:
        sock.close()
    for dev in ("/dev/null", "/dev/full"):
        if os.path.exists(dev):
            assert stat.S_ISCHR(os.stat(dev).st_mode)  # still the device


def test_a_symbolic_link_is_followed_and_stays_a_link(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "ref-v1.npz"
    real.write_bytes(b"old")
    for depth in (1, 2, 3):  # a link, a link to a link, ...
        link = tmp_path / f"link{depth}.npz"
        target = real
        for i in range(depth):
            hop = tmp_path / f"hop{depth}-{i}.npz" if i < depth - 1 else link
            hop.symlink_to(target)
            target = hop
        content = f"new {depth}".encode()
        with atomic_write(link) as f:
            f.write(content)
        assert link.is_symlink() and os.path.realpath(link) == str(real)
        assert real.read_bytes() == content and link.read_bytes() == content
        assert sorted(p.name for p in shared.iterdir()) == ["ref-v1.npz"]  # no temporary file left
    # a link to a name that does not exist yet creates the file it names
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(shared / "later.npz")
    with atomic_write(dangling) as f:
        f.write(b"x")
    assert dangling.is_symlink() and (shared / "later.npz").read_bytes() == b"x"


def test_stats_through_a_link_and_without_suffix_round_trip(folders, weights, tmp_path, capsys):
    """``stats -o ref`` writes ref.npz (and says so) that ``fid`` reads; ``-o LINK`` replaces the linked file and
    says so; a weights path holding '=' and ',' is a path, not EXT=PATH pairs."""
    a, b = folders
    w = tmp_path / "w=inception,v1.pth"
    w.write_bytes(Path(weights).read_bytes())
    assert cli._weights(str(w)) == str(w)
    code = main(["stats", str(a), "-o", str(tmp_path / "ref"), "--weights", str(w), "--device", "cpu", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and f"written to {tmp_path / 'ref.npz'}" in out
    assert (tmp_path / "ref.npz").is_file() and not (tmp_path / "ref").exists()
    code = main(["fid", str(tmp_path / "ref.npz"), str(b), "--weights", str(w), "--device", "cpu", "--json",
                 "--quiet"])
    assert code == 0
    direct = fidkit.fid(a, b, weights=weights, device="cpu").fid
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(direct, rel=1e-9)

    target = tmp_path / "team" / "ref-shared.npz"
    target.parent.mkdir()
    target.write_bytes(b"stale")
    link = tmp_path / "mine.npz"
    link.symlink_to(target)
    code = main(["stats", str(a), "-o", str(link), "--weights", str(w), "--device", "cpu", "--json", "--quiet"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["written_through_links"] == {str(link): str(target)}
    assert link.is_symlink()
    np.testing.assert_array_equal(FeatureStats.load(target).mean, FeatureStats.load(tmp_path / "ref.npz").mean)


@pytest.mark.parametrize("name", ["ref", "ref.NPZ", "ref.npz", "a.b", "dir/ref"])
def test_save_writes_the_name_that_is_read(tmp_path, name):
    s = FeatureStats.from_features(np.random.default_rng(0).standard_normal((5, 3)), Provenance(extractor="x",
                                                                                                 layer="y"))
    path = s.save(tmp_path / name)
    assert path.name.lower().endswith(".npz") and path.is_file()
    expected = name if name.lower().endswith(".npz") else name + ".npz"
    assert path == tmp_path / expected
    src = fidkit.data.sources.open_source(str(path))
    np.testing.assert_array_equal(src.reference.stats["x/y"].mean, s.mean)


@pytest.mark.parametrize("log", ["missing/log.jsonl", "missing/deeper/log.jsonl", "link-to-missing/log.jsonl"])
def test_a_log_in_a_missing_folder_is_refused_before_the_computation(folders, tmp_path, capsys, monkeypatch, log):
    a, b = folders
    (tmp_path / "link-to-missing").symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: pytest.fail("computed before checking --log"))
    for command in ("fid", "eval"):
        assert main([command, str(a), str(b), "--log", str(tmp_path / log)]) == 2
        err = capsys.readouterr().err
        assert "--log" in err and "does not exist" in err
    assert not (tmp_path / "missing").exists()


def test_a_log_may_be_a_device_or_a_link(folders, tmp_path, monkeypatch):
    """Appending replaces nothing: /dev/null and a link to a shared log are fine targets for --log."""
    target = tmp_path / "shared.jsonl"
    target.write_text("")
    link = tmp_path / "log.jsonl"
    link.symlink_to(target)
    for log in (str(link), os.devnull):
        assert cli._check_target(log, "--log") is not None
    cli._append_log(str(link), {"i": 1})
    assert link.is_symlink() and json.loads(target.read_text())["i"] == 1
