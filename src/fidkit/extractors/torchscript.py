"""The parameters and buffers of a TorchScript archive, read without TorchScript's loader: no code in the file runs.

``torch.jit.load`` compiles the archive's ``code/`` and runs it: a class's
``__setstate__`` executes while the file is read, and TorchScript can open and
create files (``torch.from_file``).  OpenAI publishes CLIP as TorchScript
archives, so fidkit reads them here instead, as data:

* The archive is a zip of one folder: ``data.pkl`` (a protocol-2 pickle of the
  root module object), ``data/<key>`` (the raw bytes of each tensor storage),
  ``code/`` (the classes' TorchScript source), ``constants.pkl``, ``version``,
  ``byteorder``.
* ``data.pkl`` is read by :class:`_Unpickler`, which can build nothing but
  tensors from the ``data/`` records (its own code: dtype from the storage
  type's name, then offset, size and stride checked against the record),
  ``OrderedDict``/``dict``/``list``/``tuple`` and scalars, and, for every class
  the archive defines (``__torch__.*``), an inert :class:`ScriptObject` that
  only records the state ``BUILD`` hands it.  Any other global is refused.
* ``code/`` is never compiled or executed: its text is scanned for each
  class's ``__parameters__`` and ``__buffers__`` declarations, which is where
  TorchScript records which attributes are the module's state.
* The state dict is gathered as ``torch.jit.load(path).state_dict()`` gives it:
  per module its parameters, then its buffers (``None`` skipped), then its
  submodules, with dotted names.

A module whose state the archive stores through its own ``__getstate__``
(anything but a dict of attributes) cannot be read without running its
``__setstate__``, and is refused.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from fidkit.errors import WeightsUnavailableError

__all__ = ["ScriptObject", "is_torchscript_archive", "read_torchscript_state_dict"]

#: Storage classes TorchScript's pickler names (``GLOBAL torch <Name>Storage``) and the dtype each holds.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}

_MAX_DEPTH = 64  # modules nested deeper than this are not a network (and would exhaust the stack)


class _Refused(Exception):
    """The archive asks for something the reader does not build."""


class _StorageType:
    """What ``GLOBAL torch FloatStorage`` stands for: a dtype, nothing callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class ScriptObject:
    """An instance of a class defined in the archive (``__torch__.*``), inert: creating it and ``BUILD`` on it
    only record what the pickle handed over.  Nothing of the class's code exists here."""

    qualname = "__torch__"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_state", None)
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        object.__setattr__(self, "_state", state)

    def __reduce__(self):  # never pickled again
        raise TypeError("a ScriptObject cannot be pickled")

    def __repr__(self) -> str:
        return f"<{self.qualname} (inert)>"


def _script_class(qualname: str, cache: dict) -> type:
    if qualname not in cache:
        cache[qualname] = type("ScriptObject", (ScriptObject,), {"qualname": qualname, "__slots__": ()})
    return cache[qualname]


def _build_list(items):
    return list(items)


def _restore_type_tag(value, type_str=None):
    return value


class _Inert:
    """Base of what the reader builds for the pickle: ``BUILD`` on it is refused (nothing is set, nothing runs)."""

    __slots__ = ()

    def __setstate__(self, state) -> None:
        raise _Refused(f"its pickle sets state on a {type(self).__name__.strip('_').lower()}")

    def __reduce__(self):
        raise TypeError("not picklable")


class _Record(_Inert):
    """A storage record ``data/<key>`` named by the pickle: read only when a state-dict tensor views it."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef(_Inert):
    """A tensor as the pickle describes it: a view (offset, size, stride) of a record."""

    __slots__ = ("record", "offset", "size", "stride")

    def __init__(self, record: _Record, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.record, self.offset, self.size, self.stride = record, offset, size, stride


class _Unpickler(pickle.Unpickler):
    """``data.pkl``'s reader: tensor descriptions, plain containers, inert script objects; nothing else."""

    def __init__(self, file):
        super().__init__(file)
        self._records: dict[str, _Record] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return _ordered_dict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist",
                                                      "build_tensorlist", "build_list"):
            return _build_list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return _restore_type_tag
        if (module == "__torch__" or module.startswith("__torch__.")) and name.isidentifier():
            return _script_class(f"{module}.{name}", self._classes)
        raise _Refused(f"its pickle names {module}.{name}, which a TorchScript archive of tensors does not need "
                       "(refused: only tensors, containers and the archive's own classes, held inert, are built)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Refused(f"unknown persistent record {str(pid)[:80]}")
        _, kind, key, location, numel = pid
        if not isinstance(kind, _StorageType):
            raise _Refused(f"storage record {str(key)[:40]} has no storage type")
        if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+", key):
            raise _Refused(f"storage record name {str(key)[:40]!r} is not a record name")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise _Refused(f"storage record {key} has element count {numel!r}")
        record = self._records.setdefault(key, _Record(key, kind.dtype, numel))
        if record.dtype != kind.dtype or record.numel != numel:
            raise _Refused(f"storage record {key} is named twice with different types or sizes")
        return record


def _ordered_dict(*args):
    if args:
        raise _Refused("its pickle builds an OrderedDict from arguments")
    return collections.OrderedDict()


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _Refused(f"tensor {what} {str(value)[:60]} is not a tuple of integers")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """A tensor viewing ``storage``, with every index checked to fall inside it (the values are read later)."""
    if not isinstance(storage, _Record):
        raise _Refused("a tensor is built from something that is not a storage record")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
        raise _Refused(f"tensor offset {storage_offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise _Refused(f"tensor size {size} and stride {stride} do not describe a tensor")
    n = storage.numel
    if all(size):
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= n:
            raise _Refused(f"tensor of size {size}, stride {stride}, offset {storage_offset} reaches past its "
                           f"storage of {n} elements")
    elif storage_offset > n:
        raise _Refused(f"tensor offset {storage_offset} past its storage of {n} elements")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       *_metadata) -> _TensorRef:
    if backward_hooks is not None and not (isinstance(backward_hooks, dict) and not backward_hooks):
        raise _Refused("a tensor comes with backward hooks")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.save`` writes zips too, but never ``code/`` or
    ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name or name.endswith("/constants.pkl") for name in z.namelist())


_CLASS = re.compile(r"class\s+([A-Za-z_]\w*)\s*\(\s*([A-Za-z_][\w.]*)\s*\)\s*:")
_DECL = re.compile(r"\s+(__parameters__|__buffers__)\s*=\s*\[(.*)\]\s*$")
_NAME = re.compile(r"""\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*,?""")


def _declarations(z: zipfile.ZipFile, prefix: str) -> dict[str, dict]:
    """``qualname -> {"module": bool, "parameters": [...], "buffers": [...]}`` from the text of ``code/``.

    The text is scanned line by line with regular expressions; it is never compiled or run.
    """
    out: dict[str, dict] = {}
    code = prefix + "code/"
    for info in z.infolist():
        name = info.filename
        if not name.startswith(code) or not name.endswith(".py"):
            continue
        module = name[len(code):-3].replace("/", ".")
        try:
            text = z.read(info).decode("utf-8")
        except (UnicodeDecodeError, zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError) as e:
            raise _Refused(f"code entry {name} is unreadable ({e})") from e
        current = None
        for line in text.splitlines():
            if line[:1] not in ("", " ", "\t"):       # a top-level line ends the class body
                current = None
                m = _CLASS.fullmatch(line.rstrip())
                if m:
                    current = out.setdefault(f"{module}.{m.group(1)}", {"module": m.group(2) == "Module"})
                continue
            if current is None:
                continue
            d = _DECL.fullmatch(line.rstrip())
            if d:
                names = [a or b for a, b in _NAME.findall(d.group(2))]
                if "".join(_NAME.sub("", d.group(2)).split()):
                    raise _Refused(f"code entry {name}: cannot read the list {d.group(1)} = [{d.group(2)[:60]}]")
                current[d.group(1).strip("_")] = names
    return out


def _gather(root, classes: dict[str, dict], materialize) -> dict[str, torch.Tensor]:
    """The state dict of the module tree under ``root``, as ``torch.jit.load(...).state_dict()`` orders it."""
    state: dict[str, torch.Tensor] = {}

    def visit(obj: ScriptObject, prefix: str, path: tuple[int, ...]):
        if len(path) > _MAX_DEPTH:
            raise _Refused(f"modules nested more than {_MAX_DEPTH} deep at {prefix or 'the root'}")
        if id(obj) in path:
            raise _Refused(f"module {prefix.rstrip('.')} contains itself")
        where = prefix.rstrip(".") or "the root module"
        decl = classes.get(obj.qualname)
        if decl is None or not decl["module"]:
            raise _Refused(f"{where} is a {obj.qualname}, which the archive's code/ does not declare as a Module")
        attrs = obj._state
        if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
            raise _Refused(f"{where} ({obj.qualname}) stores its state through its own __getstate__; reading it "
                           "would mean running the archive's __setstate__")
        declared = decl.get("parameters", []) + decl.get("buffers", [])
        for kind in ("parameters", "buffers"):
            for name in attrs:
                if name not in decl.get(kind, ()):
                    continue
                value = attrs[name]
                if value is None:
                    continue
                if not isinstance(value, _TensorRef):
                    raise _Refused(f"{prefix}{name} is declared a {kind[:-1]} but holds {type(value).__name__}")
                state[prefix + name] = materialize(value)
        absent = [n for n in declared if n not in attrs]
        if absent:
            raise _Refused(f"{where} declares {', '.join(absent[:3])} but the archive holds no value for it")
        for name, value in attrs.items():
            if isinstance(value, ScriptObject) and name not in declared and classes.get(value.qualname, {}).get(
                    "module"):
                visit(value, f"{prefix}{name}.", path + (id(obj),))

    if not isinstance(root, ScriptObject):
        raise _Refused(f"data.pkl holds {type(root).__name__}, not a TorchScript module")
    visit(root, "", ())
    return state


def _unique(names: list[str]) -> list[str]:
    seen, twice = set(), set()
    for n in names:
        (twice if n in seen else seen).add(n)
    return [n for n in seen if n not in twice]


def _read_record(z: zipfile.ZipFile, member: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
    """The record ``member`` as a 1-D tensor of ``numel`` elements of ``dtype`` (its size checked first)."""
    try:
        info = z.getinfo(member)
    except KeyError:
        raise _Refused(f"its pickle refers to the record {member}, which is not in the archive") from None
    itemsize = torch.empty((), dtype=dtype).element_size()
    if info.file_size != numel * itemsize:
        raise _Refused(f"record {member} holds {info.file_size} bytes, its header says {numel} x {itemsize}")
    buf = torch.empty(info.file_size, dtype=torch.uint8)
    view, got = memoryview(buf.numpy()), 0
    with z.open(info) as f:
        while got < info.file_size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    if got != info.file_size:
        raise _Refused(f"record {member} is truncated")
    return buf.view(dtype)


def read_torchscript_state_dict(path: str | os.PathLike, what: str = "") -> dict[str, torch.Tensor]:
    """``torch.jit.load(path).state_dict()`` (same names, values, dtypes, shapes and strides, on the CPU), read as
    data: no code from the file runs.  Anything the reader does not build is a
    :class:`~fidkit.errors.WeightsUnavailableError` naming the file; ``what`` names the network in it."""
    path = Path(path)

    def refuse(reason) -> WeightsUnavailableError:
        return WeightsUnavailableError(f"{path}: not a readable {what + ' ' if what else ''}TorchScript archive "
                                       f"({reason}); fidkit reads such archives as data and runs none of their code")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            roots = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(roots) != 1 or names.count(roots[0]) != 1:
                raise _Refused(f"{len(roots)} data.pkl entries at its top level" if len(roots) != 1
                               else f"{roots[0]} is stored more than once")
            prefix = roots[0][:-len("data.pkl")]
            repeated = sorted({n for n in names if n.startswith(prefix)} - set(_unique(names)))
            if repeated:
                raise _Refused(f"the entry {repeated[0]} is stored more than once")
            if prefix + "byteorder" in names:
                order = z.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if order != "little":
                    raise _Refused(f"its tensors are stored {order!r}-endian; fidkit reads little-endian archives")
            classes = _declarations(z, prefix)

            flats: dict[str, torch.Tensor] = {}

            def materialize(ref: _TensorRef) -> torch.Tensor:
                record = ref.record
                if record.key not in flats:
                    flats[record.key] = _read_record(z, f"{prefix}data/{record.key}", record.dtype, record.numel)
                return flats[record.key].as_strided(ref.size, ref.stride, ref.offset)

            with z.open(roots[0]) as f:
                root = _Unpickler(f).load()
            return _gather(root, classes, materialize)
    except WeightsUnavailableError:
        raise
    except _Refused as e:
        raise refuse(e) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            TypeError, AttributeError, KeyError, IndexError, RuntimeError, MemoryError, RecursionError,
            UnicodeDecodeError) as e:
        raise refuse(f"{type(e).__name__}: {e}") from e
