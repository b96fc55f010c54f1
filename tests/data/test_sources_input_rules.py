"""Input rules that used to guess or crash: empty paths, 3-D image batches, integer dtypes other than uint8,
over-long and non-UTF-8 path names.  Each ends in a clear error naming the input, or in the right images."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fidkit.cli import main
from fidkit.data.sources import open_source, to_uint8_nchw, to_uint8_nhwc
from fidkit.errors import BadInputError

from conftest import smooth_images, write_folder


# --- empty paths ------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", " ", "\t", "  \n"])
@pytest.mark.parametrize("modality", ["image", "video"])
def test_an_empty_path_is_an_error_not_the_current_folder(text, modality, tmp_path, monkeypatch):
    write_folder(tmp_path, smooth_images(2, 16, seed=0))  # what '' used to read
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match=r"source: empty path"):
        open_source(text, modality=modality)


def test_the_cli_names_the_empty_argument(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path, smooth_images(2, 16, seed=0))
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "ref.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    assert main(["fid", "", "ref.npz"]) == 2
    assert "a (REAL): empty path ''" in capsys.readouterr().err
    assert main(["fid", "ref.npz", " "]) == 2
    assert "b (FAKE): empty path ' '" in capsys.readouterr().err
    assert main(["stats", "", "-o", str(tmp_path / "s.npz")]) == 2
    assert "source: empty path" in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()


# --- 3-D batches: never a guess -----------------------------------------------------------------

THREE_D = [(3, 8, 8), (4, 8, 8), (1, 8, 8), (2, 8, 8), (8, 8, 3), (8, 8, 1), (8, 8, 4)]


@pytest.mark.parametrize("shape", THREE_D)
@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_3d_images_are_refused_with_the_layouts_to_use(shape, kind):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    x = torch.from_numpy(x) if kind == "tensor" else x
    layout = "N x 1 x H x W" if kind == "tensor" else "N x H x W x 1"
    for convert in (to_uint8_nchw, to_uint8_nhwc):
        with pytest.raises(BadInputError, match=rf"where: 3-D images of shape \({shape[0]}, .*ambiguous.*{layout}"):
            convert(x, "where", None)
    with pytest.raises(BadInputError, match="ambiguous"):  # refused when the source is opened, before any work
        open_source(x)
    with pytest.raises(BadInputError, match="ambiguous"):  # an iterable of 3-D batches, when it is read
        for _ in open_source([x]).items():
            pass


def test_grayscale_batches_in_4d_give_three_gray_images_not_one_rgb_image():
    gray = torch.stack([torch.full((8, 8), v, dtype=torch.uint8) for v in (10, 20, 30)])  # 3 x H x W
    u8, tags = to_uint8_nchw(gray[:, None], "g", None)  # N x 1 x H x W, as the error asks
    assert u8.shape == (3, 3, 8, 8) and "gray" in tags
    assert [int(u8[i].unique()) for i in range(3)] == [10, 20, 30]
    u8, _ = to_uint8_nchw(gray.numpy()[..., None], "g", None)  # N x H x W x 1 arrays
    assert [int(u8[i].unique()) for i in range(3)] == [10, 20, 30]


def test_the_evaluator_refuses_a_3d_batch(weights):
    from fidkit import Evaluator
    ev = Evaluator(("fid",), weights=weights, device="cpu")
    with pytest.raises(BadInputError, match=r"update\(generated batch 0\): 3-D images of shape \(3, 16, 16\)"):
        ev.update(torch.zeros(3, 16, 16, dtype=torch.uint8))
    ev.update(torch.zeros(3, 1, 16, 16, dtype=torch.uint8))  # the layout the error asks for is taken


# --- integer dtypes: one rule for all -------------------------------------------------------------

INT_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64]


def _pattern(name: str, dtype, rng) -> np.ndarray | None:
    shape = (2, 16, 16, 3)
    top = min(255, int(np.iinfo(dtype).max))
    if name == "zero_one":
        return rng.integers(0, 2, shape).astype(dtype)
    if name == "full_range":
        a = rng.integers(0, top + 1, shape)
        a.flat[0], a.flat[1] = 0, top
        return a.astype(dtype)
    if name == "negative":
        if np.iinfo(dtype).min >= 0:
            return None
        a = rng.integers(0, top + 1, shape)
        a.flat[5] = -1
        return a.astype(dtype)
    if name == "above_255":
        if np.iinfo(dtype).max <= 255:
            return None
        a = rng.integers(0, 256, shape)
        a.flat[7] = 256
        return a.astype(dtype)
    if name == "type_max":  # a 16-bit image, say: 65535 is not white, it is out of range
        if np.iinfo(dtype).max <= 255:
            return None
        a = rng.integers(0, 256, shape).astype(dtype)
        a.flat[3] = np.iinfo(dtype).max
        return a
    raise AssertionError(name)


CASES = [(np.dtype(d).name, p) for d in INT_DTYPES
         for p in ("zero_one", "full_range", "negative", "above_255", "type_max")
         if _pattern(p, d, np.random.default_rng(0)) is not None]


@pytest.mark.parametrize("dtype,pattern", CASES)
@pytest.mark.parametrize("container", ["array", "tensor"])
def test_every_integer_dtype_follows_the_uint8_rules(dtype, pattern, container):
    a = _pattern(pattern, np.dtype(dtype).type, np.random.default_rng(1))
    x = a if container == "array" else torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    name = np.dtype(dtype).name
    if pattern in ("negative", "above_255", "type_max"):
        lo, hi = int(a.min()), int(a.max())
        with pytest.raises(BadInputError, match=rf"where\[0:\]: {name} images must hold values in 0\.\.255.*found "
                                                rf"{lo}\.\.{hi}"):
            to_uint8_nchw(x, "where[0:]", None)
        with pytest.raises(BadInputError, match="0..255"):  # and through a source, by name
            [loader() for _, loader in open_source(x).items()]
        return
    u8, tags = to_uint8_nchw(x, "where", (0, 1))  # a declared float range does not rescale integers
    assert u8.dtype == torch.uint8
    np.testing.assert_array_equal(u8.permute(0, 2, 3, 1).numpy(), a.astype(np.int64))
    assert ("range_uint8_01" in tags) == (pattern == "zero_one")


def test_uint16_arrays_from_files_are_read_or_refused_by_name(tmp_path):
    ok = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3)).astype(np.uint16)
    np.save(tmp_path / "ok.npy", ok)
    images = [loader()[0] for _, loader in open_source(tmp_path / "ok.npy").items()]
    np.testing.assert_array_equal(np.stack(images), ok)
    np.save(tmp_path / "wide.npy", (ok.astype(np.uint32) * 257).astype(np.uint16))  # 16-bit data
    with pytest.raises(BadInputError, match=r"wide\.npy: uint16 images must hold values in 0\.\.255"):
        [loader() for _, loader in open_source(tmp_path / "wide.npy").items()]


def test_dtypes_torch_cannot_hold_are_named():
    with pytest.raises(BadInputError, match="dtype"):
        to_uint8_nchw(np.full((1, 4, 4, 3), "x", dtype=object), "obj", None)


# --- path names -----------------------------------------------------------------------------

@pytest.mark.parametrize("modality", ["image", "video"])
def test_an_over_long_path_component_is_named_not_a_traceback(tmp_path, modality):
    with pytest.raises(BadInputError, match="file name too long"):
        open_source(str(tmp_path / ("a" * 300)), modality=modality)
    with pytest.raises(BadInputError, match="file name too long"):
        open_source(str(tmp_path / ("a" * 300) / "b.png"), modality=modality)
    with pytest.raises(BadInputError, match=r"file name too long \(.* bytes in all"):
        open_source(str(tmp_path.joinpath(*["b" * 200] * 30)), modality=modality)
    with pytest.raises(BadInputError, match="not a valid path"):
        open_source("x\0y", modality=modality)


def test_the_cli_names_an_over_long_path(tmp_path, capsys):
    np.savez(tmp_path / "ref.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    assert main(["fid", str(tmp_path / ("é" * 200)), str(tmp_path / "ref.npz")]) == 2
    assert "file name too long (400 bytes" in capsys.readouterr().err


def _undecodable(tmp_path):
    root = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"gen\xff\xfe"))
    try:
        write_folder(Path(root), smooth_images(3, 16, seed=3))
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    os.rename(os.path.join(root, "0000.png"), os.fsdecode(os.path.join(os.fsencode(root), b"bad\xe9.png")))
    return root


def test_undecodable_folder_and_file_names_are_escaped_in_descriptions(tmp_path):
    root = _undecodable(tmp_path)
    src = open_source(root)
    assert src.description.endswith("gen\\xff\\xfe")
    names = [name for name, loader in src.items()]
    assert names[0].endswith("gen\\xff\\xfe/0001.png") and names[-1].endswith("gen\\xff\\xfe/bad\\xe9.png")
    for text in [src.description, *names]:  # printable, loggable and storable as UTF-8 (and across processes)
        json.dumps(text, ensure_ascii=False).encode("utf-8")
    assert len([loader() for _, loader in src.items()]) == 3


def test_the_cli_prints_undecodable_names(tmp_path, weights, capsys):
    root = _undecodable(tmp_path)
    out = tmp_path / "s.npz"
    assert main(["stats", root, "-o", str(out), "--weights", weights, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "statistics of " in printed and "gen\\xff\\xfe [inception/pool3]: N=3" in printed
    assert main(["fid", root, str(out), "--weights", weights, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "FID: " in printed and "gen\\xff\\xfe (N=3)" in printed
