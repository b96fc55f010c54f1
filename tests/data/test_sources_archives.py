"""Archives: every member is read once, by its position (a name stored twice is two members, with a warning naming
the archive and the name), and a tar stored out of name order holds a bounded number of bytes while sorting."""

import io
import tarfile
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

import fidkit.data.archives as archives
from fidkit.data.sources import open_source
from fidkit.errors import BadInputError


def _png(value: int, size: int = 8, noise: bool = False) -> bytes:
    """A PNG whose pixels say which member it is (``value``), or noise (incompressible) seeded by it."""
    if noise:
        arr = np.random.default_rng(value).integers(0, 256, (size, size, 3), dtype=np.uint8)
    else:
        arr = np.full((size, size, 3), value, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write(path, kind: str, members: list[tuple[str, bytes]]) -> None:
    if kind == "zip":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
            with zipfile.ZipFile(path, "w") as z:
                for name, data in members:
                    z.writestr(name, data)
        return
    with tarfile.open(path, {"tar": "w", "tar.gz": "w:gz"}[kind]) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def _normal(name: str) -> str:
    return name[2:] if name.startswith("./") else name


# Member-name patterns: repeats (adjacent or not), ./-prefixed spellings of one name, nested folders, unicode.
PATTERNS = {
    "twice": ["a.png", "a.png"],
    "apart": ["a.png", "b.png", "a.png"],
    "three_times_reversed": ["c.png", "a.png", "b.png", "a.png", "a.png"],
    "dot_slash": ["./a.png", "a.png", "b.png"],
    "nested": ["d1/d2/c.png", "b.png", "d1/d2/c.png", "d1/c.png"],
    "unicode": ["ü/ñ.png", "日本.png", "ü/ñ.png", "é.png"],
    "distinct": ["b.png", "a.png", "x/c.png"],
    "many": [f"{i % 13}.png" for i in range(30)],
}


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_member_is_read_once_whatever_the_names(tmp_path, kind, pattern):
    names = PATTERNS[pattern]
    path = tmp_path / f"x.{kind}"
    _write(path, kind, [(n, _png(10 + 7 * i)) for i, n in enumerate(names)])
    src = open_source(path)
    read = [(where, int(loader()[0][0, 0, 0])) for where, loader in src.items()]
    # Expected, independently: members sorted by name, equal names in archive order, each value once.
    expected = [10 + 7 * i for i, _ in sorted(enumerate(names), key=lambda p: (p[1], p[0]))]
    assert [v for _, v in read] == expected
    assert src.count == len(names) == len({w for w, _ in read})  # every item has a name of its own
    repeated = sorted({_normal(n) for n in names if [_normal(m) for m in names].count(_normal(n)) > 1})
    if repeated:
        assert len(src.notes) == 1
        assert src.notes[0].startswith(f"{path}: member names repeat: ") and repr(repeated[0]) in src.notes[0]
    else:
        assert src.notes == []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_limit_counts_repeated_names_as_members(tmp_path, kind):
    path = tmp_path / f"x.{kind}"
    _write(path, kind, [("a.png", _png(1)), ("b.png", _png(2)), ("a.png", _png(3))])
    src = open_source(path, limit=2)
    assert [int(loader()[0][0, 0, 0]) for _, loader in src.items()] == [1, 3]


def test_repeated_names_reach_the_result_warnings(tmp_path, weights):
    import fidkit
    path = tmp_path / "x.zip"
    _write(path, "zip", [(f"{i}.png", _png(20 * i, 16)) for i in range(3)] + [("1.png", _png(99, 16))])
    with pytest.warns(fidkit.FidkitWarning, match=r"x\.zip: member names repeat: '1\.png' \(2 times\)"):
        result = fidkit.evaluate(path, path, metrics="fid", weights=weights, device="cpu")
    assert result.n_a == 4


def test_a_zip_name_flagged_utf8_that_is_not_is_named(tmp_path):
    path = tmp_path / "x.zip"
    _write(path, "zip", [("é.png", _png(1))])
    path.write_bytes(path.read_bytes().replace("é".encode(), b"\xff\xfe"))
    with pytest.raises(BadInputError, match=r"x\.zip: not a readable zip archive"):
        open_source(path)


# --- a tar stored out of name order ------------------------------------------------------

def _peak_while_reading(src) -> tuple[list[int], int]:
    tracemalloc.start()
    try:
        values = []
        for _, loader in src.items():
            values.append(int(loader()[0].sum()))
        return values, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_a_tar_in_reverse_name_order_holds_at_most_the_bound(tmp_path, monkeypatch, kind):
    members = [(f"{i}.png", _png(i, 128, noise=True)) for i in range(10)]
    size = len(members[0][1])  # about 49 kB each, incompressible
    expected = [int(np.asarray(Image.open(io.BytesIO(d))).sum()) for _, d in members]
    _write(tmp_path / f"sorted.{kind}", kind, members)
    path = tmp_path / f"x.{kind}"
    _write(path, kind, members[::-1])  # the first name in order is the last member stored
    bound = int(1.5 * size)
    monkeypatch.setattr(archives, "MAX_TAR_BUFFER_BYTES", bound)
    values, in_order = _peak_while_reading(open_source(tmp_path / f"sorted.{kind}"))  # decoding's own peak
    assert values == expected

    src = open_source(path)
    values, peak = _peak_while_reading(src)
    assert values == expected
    assert any(n.startswith(f"{path}: its members are stored far out of name order") and "8 were read a second time"
               in n for n in src.notes)
    assert peak < in_order + bound + 2 * size  # holding all ten would take 10 x size

    monkeypatch.setattr(archives, "MAX_TAR_BUFFER_BYTES", 1 << 30)
    unbounded = open_source(path)
    values, peak_all = _peak_while_reading(unbounded)
    assert values == expected and unbounded.notes == []
    assert peak_all > in_order + 6 * size  # the measurement sees the buffering that the bound limits


def test_a_tar_in_name_order_is_read_in_one_pass(tmp_path, monkeypatch):
    path = tmp_path / "x.tar.gz"
    _write(path, "tar.gz", [(f"{i}.png", _png(i, 64, noise=True)) for i in range(5)])
    monkeypatch.setattr(archives, "MAX_TAR_BUFFER_BYTES", 1)
    src = open_source(path)
    assert len([loader() for _, loader in src.items()]) == 5
    assert src.notes == []
