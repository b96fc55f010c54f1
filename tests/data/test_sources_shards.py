"""Shard lists (brace and glob expansion), WebDataset tars and Parquet/Arrow tables, read locally: the same pixels
as the folder of the same images, in the documented order, with fingerprints that follow the content."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from fidkit.errors import BadInputError
from fidkit.data.sources import open_source
from fidkit.data.shards import expand, expand_braces, fingerprint
from helpers import smooth_images, write_folder
from shard_servers import png, webdataset_tar

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # the tables' tests skip; CI has pyarrow (tests/test_reference_packages.py)
    pa = pq = None
needs_arrow = pytest.mark.skipif(pa is None, reason="pyarrow is not installed (fidkit[cloud])")


def pixels(source) -> tuple[list[str], np.ndarray]:
    names, arrays = [], []
    for name, load in source.items():
        names.append(name)
        arrays.append(load()[0])
    return names, np.stack(arrays)


def folder_pixels(root) -> np.ndarray:
    return pixels(open_source(root))[1]


# --- brace expansion and globs -------------------------------------------------------------------------------

def test_ranges_keep_zero_padding_and_lists_their_order():
    assert expand_braces("s3://b/eval-{000998..001001}.tar") == [f"s3://b/eval-{i:06d}.tar" for i in range(998, 1002)]
    assert expand_braces("x{8..11}") == ["x8", "x9", "x10", "x11"]   # no padding unless written
    assert expand_braces("{c,a,b}.tar") == ["c.tar", "a.tar", "b.tar"]   # a list keeps its written order
    assert expand_braces("{0..4..2}-{x,y}") == ["0-x", "0-y", "2-x", "2-y", "4-x", "4-y"]   # leftmost slowest
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("plain.tar") == ["plain.tar"]


@pytest.mark.parametrize("spec, words", [
    ("a-{0..2", "never closed"), ("a-0..2}", "without a '{'"), ("{a,{b,c}}", "nested braces"),
    ("x{}", "empty braces"), ("x{a}", "neither a list"), ("x{a,,b}", "empty item"), ("x{0..9..0}", "step of 0"),
    ("x{0..99999999}", "more than"),
])
def test_bad_braces_are_named(spec, words):
    with pytest.raises(BadInputError, match=words) as e:
        expand_braces(spec)
    assert spec in str(e.value)


def test_globs_are_sorted_and_duplicates_refused(tmp_path):
    for name in ("b.tar", "a.tar", "c.tar", "a.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert expand(str(tmp_path / "*.tar")) == [str(tmp_path / n) for n in ("a.tar", "b.tar", "c.tar")]
    assert expand(str(tmp_path / "{c,a}.tar")) == [str(tmp_path / "c.tar"), str(tmp_path / "a.tar")]
    with pytest.raises(BadInputError, match="matches no file"):
        expand(str(tmp_path / "*.parquet"))
    with pytest.raises(BadInputError, match="more than once"):
        expand(str(tmp_path / "{a,b,a}.tar"))


# --- WebDataset tars ------------------------------------------------------------------------------------------

@pytest.fixture
def images():
    return smooth_images(7, 20, seed=3)


def write_shards(root, images, per_shard=3) -> list:
    """WebDataset shards of ``images``: sample keys ``s0000...``, png + cls + txt, a few per shard."""
    paths = []
    for s, start in enumerate(range(0, len(images), per_shard)):
        samples = [(f"s{i:04d}", {"png": png(images[i]), "cls": str(i % 3).encode(), "txt": f"caption {i}".encode()})
                   for i in range(start, min(start + per_shard, len(images)))]
        path = root / f"shard-{s:06d}.tar"
        path.write_bytes(webdataset_tar(samples))
        paths.append(path)
    return paths


def test_webdataset_shards_give_the_folder_pixels_in_order(tmp_path, images):
    write_shards(tmp_path, images)
    folder = write_folder(tmp_path / "folder", images)
    source = open_source(str(tmp_path / "shard-{000000..000002}.tar"))
    names, got = pixels(source)
    np.testing.assert_array_equal(got, folder_pixels(folder))
    assert names[0] == f"{tmp_path}/shard-000000.tar:s0000.png"
    assert names[3].startswith(f"{tmp_path}/shard-000001.tar:")
    # labels and captions are kept as metadata
    assert source.metadata[names[4]] == {"cls": "1", "txt": "caption 4"}
    # every item is stamped with its shard's fingerprint
    assert source.stamp(names[4]) == fingerprint(str(tmp_path / "shard-000001.tar"))
    # a glob reads the same shards in name order
    np.testing.assert_array_equal(pixels(open_source(str(tmp_path / "shard-*.tar")))[1], got)
    # limit stops early, across shards
    assert len(pixels(open_source(str(tmp_path / "shard-*.tar"), limit=4))[0]) == 4


def test_members_come_in_stored_order_and_samples_without_image_are_reported(tmp_path, images):
    samples = [("z", {"png": png(images[0])}), ("a", {"cls": b"1"}), ("m", {"jpg.json": b"{}", "png": png(images[1])})]
    path = tmp_path / "one.tar"
    path.write_bytes(webdataset_tar(samples))
    source = open_source(str(tmp_path / "one.t[a]r"))   # a glob, so read as a streamed shard
    names, got = pixels(source)
    assert [n.rsplit(":", 1)[1] for n in names] == ["z.png", "m.png"]   # stored order, not name order
    np.testing.assert_array_equal(got, images[:2])
    assert any("1 sample(s) hold no member with an image extension" in n and "'a'" in n for n in source.notes)


def test_several_images_in_a_sample_need_the_extension_named(tmp_path, images):
    (tmp_path / "x.tar").write_bytes(webdataset_tar([("k", {"png": png(images[0]), "seg.png": png(images[1])})]))
    with pytest.raises(BadInputError, match="several images.*--image-column"):
        pixels(open_source([str(tmp_path / "x.tar")]))
    _, got = pixels(open_source([str(tmp_path / "x.tar")], image_column="seg.png"))
    np.testing.assert_array_equal(got, images[1:2])


@pytest.mark.parametrize("where", ["at a block boundary", "inside a member"])
def test_a_truncated_shard_is_named(tmp_path, images, where):
    paths = write_shards(tmp_path, images)
    data = paths[1].read_bytes()
    cut = len(data) // 2 // 512 * 512 if where == "at a block boundary" else len(data) // 2 + 7
    paths[1].write_bytes(data[:cut])
    source = open_source(str(tmp_path / "shard-{000000..000002}.tar"))
    with pytest.raises(BadInputError, match="shard-000001.tar") as e:
        pixels(source)
    assert "truncated" in str(e.value)


def test_a_missing_shard_is_named_before_reading(tmp_path, images):
    write_shards(tmp_path, images)
    with pytest.raises(BadInputError, match=r"7 of 10 shards cannot be used: \S*shard-000003.tar: no such shard"):
        open_source(str(tmp_path / "shard-{000000..000009}.tar"))
    with pytest.raises(BadInputError, match=r"^\S*shard-000004.tar: no such shard$"):
        open_source([str(tmp_path / "shard-000000.tar"), str(tmp_path / "shard-000004.tar")])


def test_fingerprint_changes_when_a_shard_is_replaced(tmp_path, images):
    path = write_shards(tmp_path, images)[0]
    before = fingerprint(str(path))
    assert before == fingerprint(str(path))
    path.write_bytes(webdataset_tar([("s0000", {"png": png(images[5])})]))
    os.utime(path, ns=(1, 1))
    assert fingerprint(str(path)) != before


def test_streaming_writes_nothing_to_disk(tmp_path, images, monkeypatch):
    write_shards(tmp_path, images)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(var, str(scratch))
    pixels(open_source(str(tmp_path / "shard-*.tar")))
    assert list(scratch.iterdir()) == []


# --- Parquet and Arrow tables ---------------------------------------------------------------------------------

def hf_table(images) -> "pa.Table":
    """Hugging Face datasets' layout: an ``image`` struct of ``bytes`` and ``path``, and a label column."""
    return pa.table({"image": [{"bytes": png(im), "path": f"{i:04d}.png"} for i, im in enumerate(images)],
                     "label": [i % 2 for i in range(len(images))]})


@needs_arrow
def test_parquet_in_the_hugging_face_layout_equals_the_folder(tmp_path, images):
    pq.write_table(hf_table(images), tmp_path / "train.parquet", row_group_size=3)   # three row groups
    folder = write_folder(tmp_path / "folder", images)
    source = open_source(str(tmp_path / "train.parquet"))
    names, got = pixels(source)
    np.testing.assert_array_equal(got, folder_pixels(folder))
    assert names[4] == f"{tmp_path}/train.parquet:4 (0004.png)"
    assert source.metadata[names[4]] == {"label": 0}
    assert source.stamp(names[4]) == fingerprint(str(tmp_path / "train.parquet"))


@needs_arrow
def test_a_binary_column_is_found_or_named(tmp_path, images):
    table = pa.table({"id": list(range(len(images))), "jpeg": [png(im) for im in images]})
    pq.write_table(table, tmp_path / "plain.parquet")
    np.testing.assert_array_equal(pixels(open_source(str(tmp_path / "plain.parquet")))[1], images)
    two = table.append_column("thumb", pa.array([b"x"] * len(images), pa.binary()))
    pq.write_table(two, tmp_path / "two.parquet")
    with pytest.raises(BadInputError, match="cannot tell which column.*--image-column"):
        pixels(open_source(str(tmp_path / "two.parquet")))
    np.testing.assert_array_equal(pixels(open_source(str(tmp_path / "two.parquet"), image_column="jpeg"))[1], images)
    with pytest.raises(BadInputError, match="no column 'nope'"):
        pixels(open_source(str(tmp_path / "two.parquet"), image_column="nope"))
    with pytest.raises(BadInputError, match="column 'id' is int64"):
        pixels(open_source(str(tmp_path / "two.parquet"), image_column="id"))


@needs_arrow
def test_arrow_stream_files_and_shard_lists_of_tables(tmp_path, images):
    table = hf_table(images)
    with pa.ipc.new_stream(str(tmp_path / "data-00000.arrow"), table.schema) as w:
        w.write_table(table.slice(0, 4), max_chunksize=2)
    with pa.ipc.new_file(str(tmp_path / "data-00001.arrow"), table.schema) as w:
        w.write_table(table.slice(4))
    np.testing.assert_array_equal(pixels(open_source(str(tmp_path / "data-*.arrow")))[1], images)


@needs_arrow
def test_a_row_without_bytes_is_named(tmp_path, images):
    rows = [{"bytes": png(images[0]), "path": "a.png"}, {"bytes": None, "path": "/elsewhere/b.png"}]
    pq.write_table(pa.table({"image": rows}), tmp_path / "t.parquet")
    with pytest.raises(BadInputError, match=r"t.parquet:1 \(/elsewhere/b.png\): no image bytes"):
        pixels(open_source(str(tmp_path / "t.parquet")))


@needs_arrow
def test_a_truncated_table_is_named(tmp_path, images):
    pq.write_table(hf_table(images), tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(data[:len(data) - 40])
    with pytest.raises(BadInputError, match="t.parquet"):
        pixels(open_source(str(tmp_path / "t.parquet")))
