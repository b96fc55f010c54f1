"""Sources: every way of pointing fidkit at images gives the same statistics."""

import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit.errors import BadInputError
from fidkit.data.images import decode_image
from fidkit.data.sources import FeaturesSource, ImageSource, StatsSource, open_source, to_uint8_nhwc
from fidkit.stats.moments import FeatureStats

from helpers import smooth_images, write_folder


def _images(source):
    return [loader()[0] for _, loader in source.items()]


def _encode(img, fmt="PNG", mode=None):
    buf = io.BytesIO()
    im = Image.fromarray(img) if mode is None else Image.fromarray(img).convert(mode)
    im.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def imgs():
    return smooth_images(5, 24, seed=11)


def test_folder_is_recursive_and_sorted(tmp_path, imgs):
    write_folder(tmp_path, imgs, nested=True)
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(tmp_path)
    names = [n for n, _ in src.items()]
    assert src.count == 5 and names == sorted(names, key=lambda n: n.split(str(tmp_path))[1])
    assert all(n.endswith(".png") for n in names)


def test_limit_takes_the_first_n_in_sorted_order(tmp_path, imgs):
    write_folder(tmp_path, imgs)
    got = _images(open_source(tmp_path, limit=2))
    assert len(got) == 2
    np.testing.assert_array_equal(got[1], imgs[1])


def test_zip_tar_npz_npy_and_folder_agree(tmp_path, imgs):
    folder = write_folder(tmp_path / "f", imgs)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, f"inner/{p.name}")
    for suffix, mode in ((".tar", "w"), (".tar.gz", "w:gz")):
        with tarfile.open(tmp_path / f"a{suffix}", mode) as t:
            for p in sorted(folder.iterdir(), reverse=True):  # unsorted archive order
                t.add(p, p.name)
    np.savez(tmp_path / "a.npz", arr_0=imgs)
    np.save(tmp_path / "a.npy", imgs)
    expected = _images(open_source(folder))
    for name in ("a.zip", "a.tar", "a.tar.gz", "a.npz", "a.npy"):
        got = _images(open_source(tmp_path / name))
        assert len(got) == 5, name
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e, err_msg=name)


def test_npz_images_are_read_in_chunks_with_limit(tmp_path, imgs):
    np.savez_compressed(tmp_path / "c.npz", arr_0=imgs)
    got = _images(open_source(tmp_path / "c.npz", limit=3))
    assert len(got) == 3
    np.testing.assert_array_equal(got[2], imgs[2])


def test_npz_with_mu_sigma_is_statistics(tmp_path):
    np.savez(tmp_path / "ref.npz", mu=np.zeros(4), sigma=np.eye(4), arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    src = open_source(tmp_path / "ref.npz")
    assert isinstance(src, StatsSource) and src.stats.dim == 4


def test_two_dimensional_arrays_are_features(tmp_path):
    feats = np.random.default_rng(0).standard_normal((20, 7)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    np.savez(tmp_path / "f.npz", arr_0=feats)
    for name in ("f.npy", "f.npz"):
        src = open_source(tmp_path / name)
        assert isinstance(src, FeaturesSource)
        np.testing.assert_allclose(src.stats().cov, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-10)


def test_bad_paths_and_arrays_are_named(tmp_path):
    with pytest.raises(BadInputError, match="nothere: no such file, folder or saved statistics name"):
        open_source("nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty: no images found"):
        open_source(tmp_path / "empty")
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4)))
    with pytest.raises(BadInputError, match=r"x\.npy: array of shape \(2, 3, 4\)"):
        open_source(tmp_path / "x.npy")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(BadInputError, match="bad.zip: not a readable zip"):
        open_source(tmp_path / "bad.zip")


def test_unreadable_image_error_names_the_file(tmp_path, imgs):
    write_folder(tmp_path, imgs)
    (tmp_path / "0002.png").write_bytes(b"\x89PNG broken")
    src = open_source(tmp_path)
    with pytest.raises(BadInputError, match=r"0002\.png: cannot read image"):
        _images(src)


@pytest.mark.parametrize("mode,tag", [("L", "gray"), ("P", "palette"), ("CMYK", "cmyk"), ("RGBA", "alpha"),
                                      ("LA", "alpha")])
def test_mode_conversions_are_tagged(imgs, mode, tag):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    arr, tags = decode_image(_encode(imgs[0], fmt, mode), "x")
    assert arr.shape == (24, 24, 3) and arr.dtype == np.uint8
    assert tag in tags
    expected = np.asarray(Image.open(io.BytesIO(_encode(imgs[0], fmt, mode))).convert("RGB"))
    np.testing.assert_array_equal(arr, expected)  # the same pixels PIL's convert("RGB") gives


def test_sixteen_bit_images_are_scaled_not_clipped():
    img16 = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    arr, tags = decode_image(_encode(img16), "deep.png")
    assert {"16bit", "gray"} <= tags
    np.testing.assert_array_equal(arr[:, :, 0], np.round(img16 / 257).astype(np.uint8))
    assert arr.max() == 255 and arr.min() == 0


def test_jpeg_is_tagged(imgs):
    assert "jpeg" in decode_image(_encode(imgs[0], "JPEG"), "x.jpg")[1]
    assert "jpeg" not in decode_image(_encode(imgs[0], "PNG"), "x.png")[1]


def test_tensor_layouts_and_hints():
    t = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    assert to_uint8_nhwc(t, "t", None)[0][0].shape == (8, 8, 3)
    with pytest.raises(BadInputError, match="looks channels-last"):
        to_uint8_nhwc(t.permute(0, 2, 3, 1).contiguous()[:, :, :5], "t", None)
    with pytest.raises(BadInputError, match="looks channels-first"):
        to_uint8_nhwc(np.zeros((2, 3, 8, 8), np.uint8), "a", None)


def test_float_conversion_rounds_like_saving_png():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    for scale, offset, rng in ((1 / 255, 0, (0, 1)), (2 / 255, -1, (-1, 1))):
        x = u8.astype(np.float32) * scale + offset
        (img, tags), = to_uint8_nhwc(x, "x", rng)
        np.testing.assert_array_equal(img, u8[0])
        assert not tags


def test_float_without_range_nan_and_out_of_range_ints():
    with pytest.raises(BadInputError, match="need a declared value range"):
        to_uint8_nhwc(torch.rand(1, 3, 4, 4), "t", None)
    with pytest.raises(BadInputError, match="NaN or Inf"):
        to_uint8_nhwc(torch.full((1, 3, 4, 4), float("nan")), "t", (0, 1))
    with pytest.raises(BadInputError, match="0..255"):
        to_uint8_nhwc(torch.full((1, 3, 4, 4), 300), "t", None)
    u8 = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    (img, tags), = to_uint8_nhwc(u8, "t", (0, 1))  # a declared float range does not rescale uint8
    np.testing.assert_array_equal(img, u8[0].permute(1, 2, 0).numpy())
    assert not tags
    (_, tags), = to_uint8_nhwc((torch.rand(1, 3, 16, 16) > 0.5).to(torch.uint8), "t", None)
    assert tags == {"range_uint8_01"}  # [0, 1] floats cast with .byte()


@pytest.mark.parametrize("values,declared,tag", [
    (lambda: torch.rand(1, 3, 16, 16) * 255, (0, 1), "range_looks_255"),
    (lambda: torch.rand(1, 3, 16, 16) * 2 - 1, (0, 1), "range_looks_pm1"),
    (lambda: torch.rand(1, 3, 16, 16), (-1, 1), "range_looks_01"),
])
def test_suspicious_ranges_are_tagged(values, declared, tag):
    torch.manual_seed(0)
    (_, tags), = to_uint8_nhwc(values(), "t", declared)
    assert tag in tags


def test_iterable_of_batches_and_feature_stats_sources():
    batches = [torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.ones(3, 3, 8, 8, dtype=torch.uint8)]
    src = open_source(iter(batches))
    assert isinstance(src, ImageSource) and len(_images(src)) == 5
    stats = FeatureStats.from_features(np.eye(3))
    assert isinstance(open_source(stats), StatsSource)
