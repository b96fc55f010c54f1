"""The allow-list unpickler: what it builds equals what was pickled, and a file whose pickle would run code is
refused, naming the file and the global, before anything runs (a marker file the payload would write must not
appear)."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from fidkit._safe_pickle import RefusedPickleError, load_file, load_pickle, load_torch
from fidkit.errors import BadInputError


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype.newbyteorder("=") == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


DATA = {
    "f8": np.arange(12.0).reshape(3, 4), "big": np.arange(6, dtype=">f8").reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)), "i": np.arange(5, dtype=np.int64),
    "u1": np.arange(4, dtype=np.uint8), "bool": np.array([True, False]), "str": np.array(["ab", "c"]),
    "empty": np.zeros((0, 3)), "scalar": np.float32(1.5), "iscalar": np.int64(7),
    "n": 3, "x": 2.5, "s": "text", "b": b"bytes", "e": b"", "l": [1, (2, 3)], "set": {1, 2},
    "od": collections.OrderedDict(a=1), "none": None,
}


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_and_containers_round_trip(tmp_path, protocol):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(DATA, protocol=protocol))
    got = load_pickle(path)
    for key, value in DATA.items():
        want = dict(value) if isinstance(value, collections.OrderedDict) else value
        assert _same(want, got[key]), key
    assert got["big"].dtype.isnative and got["fortran"].flags.writeable


def test_numpy_1x_module_names_read(tmp_path):
    """numpy 1.x wrote numpy.core.*, numpy 2.x numpy._core.*: both are the same constructors."""
    raw = pickle.dumps({"a": np.arange(3.0), "s": np.float64(2.0)}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    path = tmp_path / "old.pkl"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    got = load_pickle(path)
    assert np.array_equal(got["a"], np.arange(3.0)) and got["s"] == 2.0


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_tensors_and_numpy(tmp_path, zip_format):
    t = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"mu": np.arange(3.0), "sigma": np.eye(3, dtype=np.float32), "view": t[:, 1:4], "half": t.half(),
           "bf16": t[0].bfloat16(), "param": torch.nn.Parameter(torch.ones(2)), "n": 5, "nested": [{"x": t[1]}]}
    path = tmp_path / "x.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    got = load_torch(path)
    assert got["n"] == 5 and np.array_equal(got["mu"], obj["mu"]) and np.array_equal(got["sigma"], obj["sigma"])
    assert np.array_equal(got["view"], t[:, 1:4].numpy()) and got["half"].dtype == np.float16
    assert np.array_equal(got["bf16"], t[0].numpy()) and np.array_equal(got["param"], np.ones(2))
    assert np.array_equal(got["nested"][0]["x"], t[1].numpy())
    assert _same(load_file(path)["mu"], obj["mu"])


# --- payloads -------------------------------------------------------------------------------------------------

class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('x')",)


class _Open:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


PAYLOADS = {
    "os.system": lambda m: _System(m),
    "builtins.exec": lambda m: _Exec(m),
    "builtins.open": lambda m: _Open(m),
    "nested in dicts": lambda m: {"fid": {"mu": np.zeros(2), "sigma": [_System(m)]}},
}


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
@pytest.mark.parametrize("container", ["pickle", "torch-zip", "torch-legacy"])
def test_payloads_are_refused_and_never_run(tmp_path, monkeypatch, kind, container):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    obj = PAYLOADS[kind](marker)
    path = tmp_path / ("stats.pkl" if container == "pickle" else "stats.pt")
    if container == "pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=container == "torch-zip")
    with pytest.raises(RefusedPickleError) as e:
        load_file(path)
    assert str(path) in str(e.value) and "global" in str(e.value)
    assert ("system" in str(e.value)) or ("exec" in str(e.value)) or ("open" in str(e.value))
    assert not marker.exists()
    assert isinstance(e.value, BadInputError)


def _forged(module: str, name: str, marker) -> bytes:
    """A protocol-2 pickle calling ``module.name(marker)`` (written by hand: the name need not exist here)."""
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + b"X" +
            len(str(marker)).to_bytes(4, "little") + str(marker).encode() + b"\x85R.")


@pytest.mark.parametrize("module,name", [
    ("numpy.testing", "_reconstruct"),          # a numpy-looking name from another module
    ("numpy", "load"), ("numpy.core.multiarray", "frombuffer"), ("numpyx.core.multiarray", "_reconstruct"),
    ("posix", "system"), ("subprocess", "check_call"), ("torch", "load"), ("torch.serialization", "load"),
    ("cdfvd.utils.metric_utils", "seed_everything"), ("builtins", "getattr"), ("builtins", "eval"),
])
def test_unexpected_globals_refused(tmp_path, module, name):
    marker = tmp_path / "MARKER"
    path = tmp_path / "forged.pkl"
    path.write_bytes(_forged(module, name, marker))
    with pytest.raises(RefusedPickleError, match=f"{module}.{name}"):
        load_pickle(path)
    assert not marker.exists()


def test_object_dtype_refused(tmp_path):
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(RefusedPickleError, match="dtype 'O"):
        load_pickle(path)


def test_torch_zip_data_pkl_payload_refused(tmp_path):
    """A hand-made archive whose data.pkl carries the payload."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "forged.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _forged("os", "system", f"touch {marker}"))
        z.writestr("archive/version", "3\n")
    with pytest.raises(RefusedPickleError, match="os.system"):
        load_torch(path)
    assert not marker.exists()


# --- damaged and forged sizes ---------------------------------------------------------------------------------

def test_truncated_pickle_named(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"mu": np.arange(100.0)})[:-40])
    with pytest.raises(RefusedPickleError, match="cut.pkl"):
        load_pickle(path)


def test_forged_length_refused_before_allocation(tmp_path):
    """A BINBYTES8 claiming 2**60 bytes is refused by the opcode scan: nothing of that size is allocated."""
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"\x80\x04\x8e" + (1 << 60).to_bytes(8, "little") + b"abc.")
    with pytest.raises(RefusedPickleError, match="declares"):
        load_pickle(path)


def test_array_shape_larger_than_its_data_refused(tmp_path):
    raw = pickle.dumps(np.zeros(4), protocol=2)
    # the shape tuple (4,) is written as BININT1 4 then TUPLE1; claim a billion elements instead
    forged = raw.replace(b"K\x04\x85", b"J\x00\xca\x9a;\x85", 1)
    assert forged != raw
    path = tmp_path / "shape.pkl"
    path.write_bytes(forged)
    with pytest.raises(RefusedPickleError, match="needs 8000000000 bytes"):
        load_pickle(path)


def test_tensor_past_its_storage_refused(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"x": torch.zeros(4)}, path)
    with zipfile.ZipFile(path) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    name = next(n for n in entries if n.endswith("data.pkl"))
    entries[name] = entries[name].replace(b"K\x04\x85", b"K\x09\x85", 1)  # size (4,) -> (9,)
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(forged, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    with pytest.raises(RefusedPickleError, match="reaches past its storage"):
        load_torch(forged)
