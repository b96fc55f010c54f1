"""Weights files run no code: TorchScript archives are read as data, hostile files end in a named weights error
(exit 4) with nothing executed, damaged (NaN/Inf) weights are refused with the file and entry named, and a custom
extractor must return one feature row per image."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn as nn

import fidkit
from fidkit.cli import main
from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors import Extractor
from fidkit.extractors.base import specs
from fidkit.extractors.clip import read_clip_state_dict
from fidkit.extractors.torchscript import is_torchscript_archive, read_torchscript_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _save_script(module: nn.Module, path: Path, trace_input=None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(module, trace_input) if trace_input is not None else torch.jit.script(module)
        scripted.save(str(path))
    return path


def _jit_state(path: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def _assert_same_state(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert got[k].shape == want[k].shape, k
        assert got[k].stride() == want[k].stride(), k
        assert got[k].storage_offset() == want[k].storage_offset(), k
        assert torch.equal(got[k], want[k]) if want[k].dtype != torch.bool or want[k].numel() else True, k


# -- the reader yields what torch.jit.load(...).state_dict() yields --------------------------------------------


class _Leaf(nn.Module):
    def __init__(self, dtype, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(5, 5)
        self.w = nn.Parameter((torch.randn(4, 6, generator=g) * 3).to(dtype), requires_grad=False)
        base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
        self.register_buffer("transposed", base.t())            # non-contiguous strides
        self.register_buffer("shifted", base.flatten()[7:19])   # a view with a storage offset
        self.register_buffer("empty", torch.zeros(0, 3, dtype=dtype))
        self.register_buffer("count", torch.tensor(seed, dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("small", torch.tensor([1, -2, 3], dtype=torch.int8))
        self.register_parameter("absent", None)
        self.not_state = torch.ones(2)                          # a plain tensor attribute: not in the state dict
        self.k = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + self.not_state.sum() * self.k


class _Tree(nn.Module):
    def __init__(self, dtype, seed):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.5, dtype=dtype))
        self.blocks = nn.ModuleList(_Leaf(dtype, seed + i) for i in range(2))
        self.head = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.BatchNorm1d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(x.float()) * self.scale.float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("how", ["script", "trace"])
def test_reader_equals_torch_jit_load_state_dict(tmp_path, dtype, how):
    net = _Tree(dtype, seed=3).eval()
    path = _save_script(net, tmp_path / "m.pt", torch.randn(2, 5) if how == "trace" else None)
    assert is_torchscript_archive(path)
    got = read_torchscript_state_dict(path)
    want = _jit_state(path)
    _assert_same_state(got, want)
    assert "blocks.0.not_state" not in got and "blocks.0.absent" not in got
    assert "blocks.1.shifted" in got and got["blocks.1.shifted"].storage_offset() == 7


def test_shared_storage_stays_shared(tmp_path):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            t = torch.arange(10.0)
            self.register_buffer("a", t)
            self.register_buffer("b", t[2:8].view(2, 3))

        def forward(self) -> int:
            return 0
    path = _save_script(M(), tmp_path / "m.pt")
    got = read_torchscript_state_dict(path)
    _assert_same_state(got, _jit_state(path))
    assert got["a"].untyped_storage().data_ptr() == got["b"].untyped_storage().data_ptr()


def test_clip_files_in_openai_format_read_as_jit_reads_them(tmp_path, monkeypatch):
    # A small CLIP-format archive, written the way write_random_openai_clip writes the published layout.
    from fidkit.extractors import clip
    path = tmp_path / "clip-like.pt"
    monkeypatch.setattr(clip, "random_clip_state_dict", lambda arch, seed=0: {
        "visual.proj": torch.randn(4, 3).half(), "visual.ln_post.weight": torch.randn(4),
        "transformer.resblocks.0.attn.in_proj_weight": torch.randn(6, 2).half(),
        "logit_scale": torch.tensor(2.0), "input_resolution": torch.tensor(224)})
    clip.write_random_openai_clip(path, "ViT-B/32")

    def no_jit(*args, **kwargs):
        raise AssertionError("torch.jit.load must not read weights")
    got = read_clip_state_dict(path)
    _assert_same_state(got, _jit_state(path))
    monkeypatch.setattr(torch.jit, "load", no_jit)
    monkeypatch.setattr(torch, "load", no_jit)
    _assert_same_state(read_clip_state_dict(path), got)


# -- hostile archives: nothing runs, a named weights error ------------------------------------------------------


def _marker(tmp_path) -> Path:
    return tmp_path / "MARKER"


class _SetstateTuple(nn.Module):
    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.w = nn.Parameter(torch.ones(2))

    def forward(self) -> int:
        return 0

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return (self.w, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        t = torch.from_file(state[1], True, 8)   # creates the file: what an attacker's archive can do at load
        self.w = state[0] + t[:2] * 0.0
        self.marker = state[1]
        self.training = state[2]


class _SetstateDict(nn.Module):
    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.w = nn.Parameter(torch.ones(2))

    def forward(self) -> int:
        return 0

    @torch.jit.export
    def __getstate__(self) -> Dict[str, torch.Tensor]:
        return {"w": self.w}

    @torch.jit.export
    def __setstate__(self, state: Dict[str, torch.Tensor]) -> None:
        t = torch.from_file("MARKER_PATH", True, 8)
        self.w = state["w"] + t[:2] * 0.0
        self.marker = "MARKER_PATH"
        self.training = False


class _Outer(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.visual = inner
        self.proj = nn.Parameter(torch.ones(3))

    def forward(self) -> int:
        return 0


def _setstate_archive(tmp_path, kind: str) -> Path:
    """An archive whose module runs ``torch.from_file(marker)`` in its ``__setstate__`` when TorchScript loads it."""
    marker = str(_marker(tmp_path))
    module = {"tuple": lambda: _SetstateTuple(marker), "nested": lambda: _Outer(_SetstateTuple(marker)),
              "dict": lambda: _SetstateDict(marker)}[kind]()
    path = _save_script(module, tmp_path / f"setstate-{kind}.pt")
    if kind == "dict":  # this variant's marker path is written in its code
        _rewrite_member(path, lambda name, data: data.replace(b"MARKER_PATH", marker.encode())
                        if "/code/" in name and name.endswith(".py") else data)
    return path


def _rewrite_member(path: Path, change) -> None:
    with zipfile.ZipFile(path) as z:
        entries = [(i, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            z.writestr(info, change(info.filename, data))


def _assert_harmless(path: Path, tmp_path: Path, read=read_clip_state_dict):
    """Loads with a weights error naming the file, or loads tensors only; never runs anything."""
    try:
        state = read(path)
    except WeightsUnavailableError as e:
        assert str(path) in str(e)
    else:
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not _marker(tmp_path).exists()


@pytest.mark.parametrize("kind", ["tuple", "nested", "dict"])
def test_setstate_payload_does_not_run(tmp_path, kind):
    path = _setstate_archive(tmp_path, kind)
    if kind in ("tuple", "nested"):
        with pytest.raises(WeightsUnavailableError, match=r"__setstate__") as e:
            read_clip_state_dict(path)
        assert str(path) in str(e.value)
    _assert_harmless(path, tmp_path)
    # the payload is live: TorchScript's own loader runs it (what fidkit no longer calls)
    _jit_state(path)
    assert _marker(tmp_path).exists()


def test_setstate_payload_through_the_cli_exits_4(tmp_path, folders, capsys):
    path = _setstate_archive(tmp_path, "tuple")
    a, b = folders
    code = main(["eval", str(a), str(b), "--metrics", "fd_clip", "--weights", f"clip={path}", "--device", "cpu",
                 "--quiet"])
    assert code == 4
    assert str(path) in capsys.readouterr().err
    assert not _marker(tmp_path).exists()


class _Reduce:
    """Pickles as a call of ``func(*args)`` (what a hostile pickle does with GLOBAL + REDUCE), then ``BUILD`` with
    ``state`` when given."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _Storage:
    """Stands for the record ``data/<key>``: pickled as TorchScript's persistent id."""

    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel = key, kind, numel


class _ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.numel)
        return None


def _reduce_script_object(self, protocol):  # GLOBAL __torch__ <name>, EMPTY_TUPLE, NEWOBJ, state, BUILD
    import copyreg
    return (copyreg.__newobj__, (type(self),), self.state)


_FAKE_TORCH = type(sys)("__torch__")


def _torch_class(name):
    if not hasattr(_FAKE_TORCH, name):
        setattr(_FAKE_TORCH, name, type(name, (), {"__module__": "__torch__", "__qualname__": name,
                                                   "__reduce_ex__": _reduce_script_object}))
    return getattr(_FAKE_TORCH, name)


def _ScriptClass(name, state):
    """An instance of ``__torch__.<name>`` as TorchScript pickles one: the class, no arguments, BUILD with state."""
    obj = _torch_class(name)()
    obj.state = state
    return obj


def _dumps(obj, protocol=2) -> bytes:
    saved = sys.modules.get("__torch__")
    sys.modules["__torch__"] = _FAKE_TORCH
    try:
        buf = io.BytesIO()
        _ArchivePickler(buf, protocol=protocol).dump(obj)
        return buf.getvalue()
    finally:
        if saved is None:
            del sys.modules["__torch__"]
        else:
            sys.modules["__torch__"] = saved


def _tensor(storage, offset, size, stride, state=None):
    import collections
    return _Reduce(torch._utils._rebuild_tensor_v2,
                   (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict()), state)


_CODE = 'class M(Module):\n  __parameters__ = ["w", ]\n  __buffers__ = []\n  w : Tensor\n  training : bool\n'
_W = torch.arange(6, dtype=torch.float32)


def _module(w) -> _ScriptClass:
    return _ScriptClass("M", {"w": w, "training": False})


def _write_archive(path: Path, data_pkl: bytes, records=None, code: str = _CODE, extra=()) -> Path:
    """A TorchScript archive written member by member, as torch.jit.save lays it out."""
    records = {"0": _W.numpy().tobytes()} if records is None else records
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/code/__torch__.py", code)
        for key, data in records.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
        for name, data in extra:
            z.writestr(name, data)
    return path


def test_a_hand_written_archive_reads_as_jit_reads_it(tmp_path):
    # the positive control of the hand-written payload archives below
    path = _write_archive(tmp_path / "ok.pt", _dumps(_module(_tensor(_Storage("0", torch.FloatStorage, 6), 1,
                                                                          (2, 2), (1, 2)))))
    got = read_torchscript_state_dict(path)
    assert list(got) == ["w"] and torch.equal(got["w"], _W[1:].as_strided((2, 2), (1, 2)))
    assert torch.equal(_jit_state(path)["w"], got["w"])


def _payloads(marker: Path) -> dict[str, bytes]:
    touch = f"open({str(marker)!r}, 'w').close()"
    cmd = f"touch {marker}"
    storage = _Storage("0", torch.FloatStorage, 6)
    return {
        "os.system": _dumps(_Reduce(os.system, (cmd,))),
        "builtins.exec": _dumps(_Reduce(exec, (touch,))),
        "builtins.eval": _dumps(_Reduce(eval, (touch,))),
        "subprocess.call": _dumps(_Reduce(subprocess.call, (["touch", str(marker)],))),
        "builtins.open": _dumps(_Reduce(open, (str(marker), "w"))),
        "torch.from_file": _dumps(_Reduce(torch.from_file, (str(marker), True, 8))),
        "protocol-4 STACK_GLOBAL": _dumps(_Reduce(os.system, (cmd,)), protocol=4),
        "protocol-0 INST": b"(S'" + cmd.encode() + b"'\nios\nsystem\n.",
        "inside a module": _dumps(_ScriptClass("M", {"w": _tensor(storage, 0, (6,), (1,)),
                                                     "x": _Reduce(os.system, (cmd,)), "training": False})),
        "as a storage type": _dumps(_module(_tensor(_Storage("0", os.system, 6), 0, (6,), (1,)))),
        "storage type called": _dumps(_module(_Reduce(torch.FloatStorage, (6,)))),
        "BUILD on a tensor": _dumps(_module(_tensor(storage, 0, (6,), (1,), state=(storage, 0, (100,), (1,))))),
        "BUILD with hooks on a tensor": _dumps(_module(_tensor(storage, 0, (6,), (1,),
                                                               state={"_backward_hooks": {0: print}}))),
        "module state is a payload": _dumps(_ScriptClass("M", _Reduce(os.system, (cmd,)))),
        "hooks": _dumps(_module(_Reduce(torch._utils._rebuild_tensor_v2,
                                        (storage, 0, (6,), (1,), True, {0: _Reduce(os.system, (cmd,))})))),
    }


@pytest.mark.parametrize("name", list(_payloads(Path("m"))))
def test_pickle_payload_in_an_archive_does_not_run(tmp_path, name):
    path = _write_archive(tmp_path / "payload.pt", _payloads(_marker(tmp_path))[name])
    with pytest.raises(WeightsUnavailableError) as e:
        read_clip_state_dict(path)
    assert str(path) in str(e.value) and "TorchScript" in str(e.value)
    assert not _marker(tmp_path).exists()


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "protocol-0 INST", "protocol-4 STACK_GLOBAL"])
def test_the_payloads_are_live(tmp_path, name):
    # what the payloads above do when an ordinary unpickler reads them
    pickle.loads(_payloads(_marker(tmp_path))[name])
    assert _marker(tmp_path).exists()


@pytest.mark.parametrize("code", [
    "import os\nos.system('touch MARKER_PATH')\n",
    "class Evil(Module):\n  __parameters__ = [\"w\", ]\n  def __setstate__(self, state: Tuple[Tensor, bool]) -> None:\n"
    "    t = torch.from_file(\"MARKER_PATH\", True, 8)\n    self.w = state[0] + t[:2] * 0.0\n",
    "__import__('os').system('touch MARKER_PATH')\nclass _Outer(Module):\n  __parameters__ = [__import__('os').system"
    "('touch MARKER_PATH'), ]\n",
])
def test_crafted_code_entry_is_never_run(tmp_path, code):
    marker = str(_marker(tmp_path))
    path = _save_script(_Outer(nn.Linear(2, 2)), tmp_path / "code.pt")
    want = read_torchscript_state_dict(path)
    text = code.replace("MARKER_PATH", marker).encode()
    _rewrite_member(path, lambda member, data: data + b"\n" + text if "/code/" in member and member.endswith(".py")
                    else data)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(next(n for n in z.namelist() if n.endswith("/data.pkl")).replace("data.pkl", "code/evil.py"), text)
    try:
        got = read_torchscript_state_dict(path)
    except WeightsUnavailableError as e:
        assert str(path) in str(e)
    else:
        _assert_same_state(got, want)
    assert not _marker(tmp_path).exists()


def _damaged(tmp_path, damage) -> Path:
    path = tmp_path / "damaged.pt"
    storage = _Storage("0", torch.FloatStorage, 6)
    ok = _dumps(_module(_tensor(storage, 0, (6,), (1,))))
    if damage == "record missing":
        return _write_archive(path, ok, records={})
    if damage == "record short":
        return _write_archive(path, ok, records={"0": _W.numpy().tobytes()[:-4]})
    if damage == "record named twice":
        return _write_archive(path, _dumps(_ScriptClass("M", {"w": _tensor(storage, 0, (6,), (1,)),
                                                              "v": _tensor(_Storage("0", torch.HalfStorage, 12), 0,
                                                                           (6,), (1,))})))
    if damage == "record name with a path":
        return _write_archive(path, _dumps(_module(_tensor(_Storage("../0", torch.FloatStorage, 6), 0, (6,), (1,)))))
    if damage == "offset past end":
        return _write_archive(path, _dumps(_module(_tensor(storage, 1, (6,), (1,)))))
    if damage == "stride past end":
        return _write_archive(path, _dumps(_module(_tensor(storage, 0, (2, 2), (4, 2)))))
    if damage == "negative stride":
        return _write_archive(path, _dumps(_module(_tensor(storage, 5, (6,), (-1,)))))
    if damage == "size not integers":
        return _write_archive(path, _dumps(_module(_tensor(storage, 0, ("6",), (1,)))))
    if damage == "parameter not a tensor":
        return _write_archive(path, _dumps(_module(3)))
    if damage == "parameter absent":
        return _write_archive(path, _dumps(_ScriptClass("M", {"training": False})))
    if damage == "class not declared":
        return _write_archive(path, ok, code="")
    if damage == "module contains itself":
        root = _ScriptClass("M", {"w": _tensor(storage, 0, (6,), (1,)), "training": False})
        root.state["me"] = root
        return _write_archive(path, _dumps(root))
    if damage == "root not a module":
        return _write_archive(path, _dumps({"w": _tensor(storage, 0, (6,), (1,))}))
    if damage == "two data.pkl":
        return _write_archive(path, ok, extra=[("other/data.pkl", ok)])
    if damage == "entry stored twice":
        return _write_archive(path, ok, extra=[("archive/data/0", b"\x00" * 24)])
    if damage == "big-endian":
        _write_archive(path, ok)
        _rewrite_member(path, lambda m, d: b"big" if m.endswith("/byteorder") else d)
        return path
    if damage == "truncated pickle":
        return _write_archive(path, ok[:-7])
    if damage == "not a zip":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
        return path
    raise AssertionError(damage)


_DAMAGES = ["record missing", "record short", "record named twice", "record name with a path", "offset past end",
            "stride past end", "negative stride", "size not integers", "parameter not a tensor", "parameter absent",
            "class not declared", "module contains itself", "root not a module", "two data.pkl",
            "entry stored twice", "big-endian", "truncated pickle", "not a zip"]


@pytest.mark.parametrize("damage", _DAMAGES)
def test_malformed_archives_are_named_weights_errors(tmp_path, damage):
    path = _damaged(tmp_path, damage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(WeightsUnavailableError) as e:
            read_torchscript_state_dict(path, "CLIP")
    assert str(path) in str(e.value) and "CLIP" in str(e.value)


# -- torch.save pickles (zip and legacy) offered as weights: a named weights error -----------------------------


class _NotWeights:
    def __init__(self):
        self.x = torch.ones(2)


def _weighted_specs():
    return [s.name for s in specs() if s.weights is not None]


def _torch_save_files(tmp_path, marker: Path) -> dict[str, Path]:
    out = {}
    for legacy in (False, True):
        fmt = "legacy" if legacy else "zip"
        for what, obj in (("object", {"a": _NotWeights()}),
                          ("payload", {"w": _Reduce(os.system, (f"touch {marker}",))})):
            path = tmp_path / f"{what}-{fmt}.pt"
            torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
            out[f"{what}-{fmt}"] = path
    return out


@pytest.mark.parametrize("name", _weighted_specs())
def test_torch_save_pickles_and_hostile_files_are_weights_errors_for_every_network(tmp_path, name):
    marker = _marker(tmp_path)
    files = _torch_save_files(tmp_path, marker)
    files["torchscript setstate"] = _setstate_archive(tmp_path, "tuple")
    files["garbage"] = tmp_path / "garbage.pt"
    files["garbage"].write_bytes(b"\x80\x02garbage" * 10)
    files["empty"] = tmp_path / "empty.pt"
    files["empty"].write_bytes(b"")
    for what, obj in (("int entry", {"visual.proj": 3, "Conv2d_1a_3x3.conv.weight": 3}),
                      ("list entry", {"Conv2d_1a_3x3.conv.weight": [1.0, 2.0]}), ("bare list", [torch.ones(2)])):
        files[what] = tmp_path / f"{what.replace(' ', '-')}.pt"
        torch.save(obj, files[what])
    for kind, path in files.items():
        with pytest.raises(WeightsUnavailableError) as e:
            Extractor(name, weights=path, device="cpu")
        assert str(path) in str(e.value), kind
        assert not marker.exists(), kind


@pytest.mark.parametrize("legacy", [False, True])
def test_a_torch_save_pickle_as_clip_weights_exits_4(tmp_path, folders, capsys, legacy):
    path = tmp_path / "clip.pt"
    torch.save({"visual.proj": _NotWeights()}, path, _use_new_zipfile_serialization=not legacy)
    a, b = folders
    code = main(["eval", str(a), str(b), "--metrics", "fd_clip", "--weights", f"clip={path}", "--device", "cpu",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 4 and str(path) in err and "Traceback" not in err
    assert "add_safe_globals" not in err  # torch's advice to allow-list the global is not fidkit's


# -- NaN / Inf in any network's weights -------------------------------------------------------------------------


def _write_in_format(spec_name: str, state: dict, path: Path) -> Path:
    """``state`` in the file format the network's published weights come in."""
    if spec_name.startswith("clip"):
        class Holder(nn.Module):
            def forward(self) -> int:
                return 0
        root = Holder()
        for key, value in state.items():
            *parents, leaf = key.split(".")
            m = root
            for p in parents:
                if not hasattr(m, p):
                    m.add_module(p, Holder())
                m = getattr(m, p)
            m.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        return _save_script(root, path)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", _weighted_specs())
def test_non_finite_weights_are_refused_on_load_naming_file_and_entry(tmp_path, name, bad):
    for i, dtype in enumerate((torch.float32, torch.float16, torch.bfloat16, torch.float64)):
        values = torch.linspace(-1, 1, 12, dtype=dtype).reshape(3, 4)
        values[1, 2 + i % 2] = bad
        state = {"visual.good.weight": torch.ones(2, 3), "visual.blocks.0.bad_entry": values,
                 "visual.later.weight": torch.full((2,), float("nan"))}
        path = _write_in_format(name, state, tmp_path / f"{name}-{i}.pt")
        with pytest.raises(WeightsUnavailableError) as e:
            Extractor(name, weights=path, device="cpu")
        msg = str(e.value)
        assert str(path) in msg and "visual.blocks.0.bad_entry" in msg, msg
        assert ("NaN" if bad != bad else "Inf") in msg


def test_a_nan_in_real_format_inception_weights_names_the_entry_not_the_features(tmp_path, weights, folders):
    state = torch.load(weights, weights_only=True)
    key = "Mixed_6b.branch7x7_2.conv.weight"
    state[key] = state[key].clone()
    state[key].view(-1)[17] = float("nan")
    path = tmp_path / "inception-nan.pth"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError, match=rf"{key}.*1 NaN") as e:
        fidkit.fid(*folders, weights=path, device="cpu")
    assert str(path) in str(e.value)
    assert "features" not in str(e.value)


# -- custom extractors: one row per image -------------------------------------------------------------------


class _Rows(nn.Module):
    def __init__(self, rows_for):
        super().__init__()
        self.rows_for = rows_for
        self.lin = nn.Linear(3, 8)

    def forward(self, x):
        feats = self.lin(x.mean((2, 3)))
        n = self.rows_for(x.shape[0])
        return feats.repeat(n // feats.shape[0] + 1, 1)[:n]


@pytest.mark.parametrize("rows_for", [lambda n: 1, lambda n: n - 1, lambda n: 2 * n, lambda n: n + 1,
                                      lambda n: 0], ids=["one", "fewer", "double", "one-more", "none"])
def test_custom_extractor_must_return_one_row_per_image(rows_for):
    spec = fidkit.custom_extractor("rows-check", _Rows(rows_for), dim=8, size=16, register_it=False)
    net = spec.build({}, "")
    x = torch.rand(3, 3, 16, 16)
    with pytest.raises(BadInputError, match=r"'rows-check' returned \d+ feature rows for a batch of 3 images"):
        net(x)


def test_custom_extractor_row_count_is_checked_end_to_end():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 256, (6, 3, 16, 16), dtype=np.uint8))
    b = torch.from_numpy(rng.integers(0, 256, (6, 3, 16, 16), dtype=np.uint8))
    fidkit.custom_extractor("rows-e2e", _Rows(lambda n: 2 * n), dim=8, size=16)
    with pytest.raises(BadInputError, match="rows-e2e"):
        fidkit.evaluate(a, b, metrics="fd", features="rows-e2e", device="cpu", batch_size=3)
    fidkit.custom_extractor("rows-e2e", _Rows(lambda n: n), dim=8, size=16)  # one row per image: accepted
    r = fidkit.evaluate(a, b, metrics="fd", features="rows-e2e", device="cpu", batch_size=3)
    assert np.isfinite(r["fd_rows_e2e"])
