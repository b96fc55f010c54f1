"""Sources under faults: nothing that looks like an image is dropped silently; bad files are named."""

import io
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from fidkit.data.sources import open_source
from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats

from helpers import smooth_images, write_folder


def _names(src):
    return [name for name, _ in src.items()]


def test_symlinked_sub_folders_are_followed(tmp_path):
    outside = write_folder(tmp_path / "outside", smooth_images(3, 16, seed=1))
    root = write_folder(tmp_path / "root", smooth_images(2, 16, seed=2))
    os.symlink(outside, root / "linked")
    src = open_source(root)
    assert src.count == 5 and sum("/root/linked/" in n for n in _names(src)) == 3


def test_a_folder_reached_twice_is_an_error(tmp_path):
    root = write_folder(tmp_path / "root", smooth_images(2, 16, seed=2), nested=True)
    os.symlink(root / "part0", root / "again")
    with pytest.raises(BadInputError, match="counted twice"):
        open_source(root)


def test_an_unreadable_sub_folder_is_an_error_whoever_runs(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "root", smooth_images(2, 16, seed=2), nested=True)
    real_scandir = os.scandir

    def failing(path="."):
        if str(path).endswith("part1"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", failing)
    with pytest.raises(BadInputError, match="part1: cannot list this folder"):
        open_source(root)


def test_broken_links_and_fifos_with_image_names_are_errors(tmp_path):
    root = write_folder(tmp_path / "root", smooth_images(2, 16, seed=2))
    os.symlink(tmp_path / "missing.png", root / "zz.png")
    with pytest.raises(BadInputError, match="zz.png: broken symbolic link"):
        open_source(root)
    os.unlink(root / "zz.png")
    os.mkfifo(root / "pipe.png")
    with pytest.raises(BadInputError, match="pipe.png: not a regular file"):
        open_source(root)


def test_a_fifo_given_as_a_source_is_refused(tmp_path):
    os.mkfifo(tmp_path / "x.npz")
    with pytest.raises(BadInputError, match="not a regular file"):
        open_source(tmp_path / "x.npz")


def _png(seed):
    buf = io.BytesIO()
    Image.fromarray(smooth_images(1, 16, seed=seed)[0]).save(buf, format="PNG")
    return buf.getvalue()


def test_tar_hard_links_are_counted_and_symlinks_refused(tmp_path):
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as t:
        data = _png(1)
        info = tarfile.TarInfo("a.png")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b.png")
        link.type, link.linkname = tarfile.LNKTYPE, "a.png"
        t.addfile(link)
    src = open_source(path)
    assert src.count == 2
    loaded = [loader()[0] for _, loader in src.items()]
    assert len(loaded) == 2 and (loaded[0] == loaded[1]).all()
    with tarfile.open(path, "a") as t:
        sym = tarfile.TarInfo("c.png")
        sym.type, sym.linkname = tarfile.SYMTYPE, "a.png"
        t.addfile(sym)
    with pytest.raises(BadInputError, match="c.png: a symbolic link"):
        open_source(path)


def test_a_truncated_tar_gz_is_named(tmp_path):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for i in range(3):
            data = _png(i) + os.urandom(2000)  # incompressible, so the cut lands inside the members
            info = tarfile.TarInfo(f"{i}.png")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadInputError, match="a.tar.gz"):
        src = open_source(path)
        for _, loader in src.items():
            loader()


def test_an_encrypted_zip_member_is_named(tmp_path, monkeypatch):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.png", _png(1))
    src = open_source(path)

    def encrypted(self, name, pwd=None):
        raise RuntimeError(f"File {name!r} is encrypted, password required for extraction")
    monkeypatch.setattr(zipfile.ZipFile, "read", encrypted)
    with pytest.raises(BadInputError, match="a.zip:a.png: cannot read .*encrypted"):
        for _, loader in src.items():
            loader()


def test_decompression_bombs_are_refused_by_name(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "root", smooth_images(1, 64, seed=2))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    src = open_source(root)
    with pytest.raises(BadInputError, match="0000.png: refused, it declares more than"):
        for _, loader in src.items():
            loader()


@pytest.mark.parametrize("sigma, match", [
    (np.array([[1.0, 0.5], [0.2, 1.0]]), "not symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "not positive semi-definite"),
    (np.array([[-1.0, 0.0], [0.0, 1.0]]), "negative variance"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
    (np.eye(3), "does not match"),
])
def test_invalid_statistics_files_are_refused_by_name(tmp_path, sigma, match):
    np.savez(tmp_path / "bad.npz", mu=np.zeros(2), sigma=sigma)
    with pytest.raises(BadInputError, match=f"bad.npz.*{match}"):
        open_source(tmp_path / "bad.npz")


def test_a_subtly_indefinite_covariance_is_an_error_not_a_clamped_distance():
    # Every correlation is within [-1, 1], but the matrix has a negative eigenvalue (-0.8).
    sigma = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    assert np.linalg.eigvalsh(sigma).min() < -0.5
    a = FeatureStats.from_moments(np.zeros(3), sigma, n=100)
    b = FeatureStats.from_moments(np.zeros(3), np.eye(3), n=100)
    from fidkit.metrics import frechet_distance
    with pytest.raises(BadInputError, match="not positive semi-definite"):
        frechet_distance(a, b, force=True)


def test_archive_members_that_claim_gigabytes_are_refused(tmp_path, monkeypatch):
    from fidkit.data import archives
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", b"\0" * 200_000)  # compresses to a few hundred bytes
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 100_000)
    with pytest.raises(BadInputError, match="big.png: declares 200,000 bytes"):
        open_source(path)


def test_big_endian_arrays_and_empty_images(tmp_path):
    imgs = smooth_images(3, 8, seed=1).astype(np.float32) / 255
    np.save(tmp_path / "be.npy", imgs.astype(">f4"))
    src = open_source(tmp_path / "be.npy", value_range=(0, 1))
    got = np.stack([loader()[0] for _, loader in src.items()])
    np.testing.assert_array_equal(got, np.round(imgs * 255).astype(np.uint8))
    np.save(tmp_path / "empty.npy", np.zeros((2, 0, 8, 3), np.uint8))
    with pytest.raises(BadInputError, match="have no pixels"):
        for _, loader in open_source(tmp_path / "empty.npy").items():
            loader()


def test_a_corrupt_compressed_npz_member_is_named(tmp_path):
    path = tmp_path / "imgs.npz"
    np.savez_compressed(path, arr_0=smooth_images(40, 16, seed=1))
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = os.urandom(64)  # damage the deflated stream, not the directory
    path.write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match="imgs.npz"):
        for _, loader in open_source(path).items():
            loader()


@pytest.mark.slow
def test_skip_bad_leaves_unreadable_files_out_and_reports_them(tmp_path, weights, capsys):
    import json

    import fidkit
    from fidkit.cli import main
    a = write_folder(tmp_path / "a", smooth_images(6, 32, seed=1))
    b = write_folder(tmp_path / "b", smooth_images(6, 32, seed=2))
    (b / "0002.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match="0002.png: cannot read image"):
        fidkit.fid(a, b, weights=weights, device="cpu")
    r = fidkit.fid(a, b, weights=weights, device="cpu", skip_bad=True)
    assert r.n_b == 5 and list(r.skipped) == [str(b)] and "0002.png" in r.skipped[str(b)][0]
    assert any("1 unreadable files" in w and "0002.png" in w for w in r.warnings)
    good = write_folder(tmp_path / "good", np.delete(smooth_images(6, 32, seed=2), 2, axis=0))
    assert r.fid == pytest.approx(fidkit.fid(a, good, weights=weights, device="cpu").fid, rel=1e-9)
    log = tmp_path / "log.jsonl"
    assert main(["fid", str(a), str(b), "--skip-bad", "--weights", weights, "--device", "cpu", "--json", "--quiet",
                 "--log", str(log)]) == 0
    assert "0002.png" in json.loads(capsys.readouterr().out)["skipped"][str(b)][0]
    assert "0002.png" in json.loads(log.read_text())["skipped"][str(b)][0]


def test_images_above_pils_warning_limit_are_reported_once(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "root", smooth_images(2, 64, seed=2))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)  # warn above this, refuse above twice it
    tags = [loader()[1] for _, loader in open_source(root).items()]
    assert all("huge" in t for t in tags)
