"""Pickles read as data: an allow-list unpickler that builds numpy arrays, tensors' values, containers and scalars,
and nothing else; no code carried in a file ever runs.

Publishers ship statistics as pickles (EDM2's ``dataset-refs/*.pkl``, cd-FVD's
``FeatureStats`` caches) and as ``torch.save`` files (torch-fidelity's caches:
numpy arrays inside, which ``torch.load(weights_only=True)`` refuses).
``pickle.load`` would run whatever a file names; this module reads them instead:

* :class:`SafeUnpickler` resolves a global only from a short allow-list, to
  fidkit's own constructors: numpy's array and scalar reconstruction (the names
  numpy 1.x and 2.x write, ``numpy.core.*`` and ``numpy._core.*``) building
  plain-number dtypes only, ``_codecs.encode`` as protocol 2 uses it for bytes,
  ``set``/``frozenset``/``OrderedDict``, and, for a few known statistics classes
  (:data:`INERT_CLASSES`), an inert holder that only records the state the
  pickle hands it.  Any other global is refused, naming it.
* Before any object is built the file's opcodes are scanned
  (:func:`pickletools.genops`): a length that reaches past the end of the data
  is refused there, so no declared size is ever allocated.
* Tensors (``torch.save``) are read from their storage records as
  :class:`TensorUnpickler` describes them: dtype from the storage type's name,
  offset, size and stride checked against the record before a byte is read.
  The TorchScript reader (:mod:`fidkit.extractors.torchscript`) builds on the
  same pieces.

:func:`load_pickle` reads a plain pickle, :func:`load_torch` a ``torch.save``
file (zip or the legacy format), :func:`load_file` either; each returns plain
Python data (dicts, lists, tuples, numbers, strings, numpy arrays; tensors as
numpy arrays; inert objects as their state dicts) or raises
:class:`RefusedPickleError` naming the file and the reason.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fidkit.errors import BadInputError

__all__ = ["INERT_CLASSES", "RefusedPickleError", "SafeUnpickler", "TensorUnpickler", "load_file", "load_pickle",
           "load_torch", "sniff"]

#: Pickled classes of published statistics, read as the state dict they hand over (their code never runs):
#: cd-FVD's and the StyleGAN lineage's ``FeatureStats`` (both pickle ``self.__dict__``; an object pickled whole
#: reads the same) and dnnlib's ``EasyDict`` (a ``dict`` with attribute access).
INERT_CLASSES: dict[tuple[str, str], str] = {
    ("cdfvd.utils.metric_utils", "FeatureStats"): "object",
    ("metrics.metric_utils", "FeatureStats"): "object",
    ("dnnlib.util", "EasyDict"): "dict",
    ("dnnlib", "EasyDict"): "dict",
}

#: Storage classes ``torch.save`` and TorchScript name (``GLOBAL torch <Name>Storage``) and the dtype each holds.
STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}

_MAX_DEPTH = 100           # containers nested deeper than this are not statistics
_MAX_NDIM = 32             # numpy's own limit
_MAX_PICKLE_BYTES = 1 << 33  # 8 GiB: a data.pkl larger than this is not a statistics file
#: plain-number and string dtypes numpy pickles as ``numpy.dtype(spec, False, True)``; objects, records, dates not
_DTYPE_SPEC = re.compile(r"b1|[iu][1248]|f[248]|c(?:8|16)|[US][0-9]{1,7}")


class RefusedPickleError(BadInputError):
    """A pickle (or ``torch.save`` file) asks for something fidkit does not build, or is damaged; nothing in it
    ran.  The message names the file and the reason (the refused global, the bad length, ...)."""


class Refused(Exception):
    """Internal: the data asks for something the reader does not build (the caller adds the file's name)."""


# --- what globals stand for -----------------------------------------------------------------------------------

class _Inert:
    """Base of the reader's own placeholders: ``BUILD`` on one is refused, and none can be pickled again."""

    __slots__ = ()

    def __setstate__(self, state) -> None:
        raise Refused(f"its pickle sets state on a {type(self).__name__.strip('_').lower()}")

    def __reduce__(self):
        raise TypeError("not picklable")


class _Token(_Inert):
    """A global that stands for a type, never called: ``numpy.ndarray``, ``builtins.object``."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise Refused(f"its pickle calls {self.name}")

    def __repr__(self) -> str:
        return self.name


_NDARRAY, _OBJECT = _Token("numpy.ndarray"), _Token("builtins.object")


class _DType(_Inert):
    """``numpy.dtype(spec, align, copy)`` and the state ``BUILD`` gives it (byte order, string width): becomes a
    real :class:`numpy.dtype` only for plain numbers and strings."""

    __slots__ = ("dtype",)

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
            raise Refused(f"its pickle asks for the numpy dtype {str(spec)[:40]!r} (only numbers and strings are "
                          "read: no objects, records or dates)")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[2:5] != (None, None, None):
            raise Refused(f"numpy dtype state {str(state)[:80]} is not that of a plain dtype")
        order = state[1]
        if order not in ("<", ">", "|", "="):
            raise Refused(f"numpy dtype byte order {order!r}")
        if self.dtype.kind in "US" and state[5] != self.dtype.itemsize:
            raise Refused(f"numpy dtype {self.dtype} with item size {state[5]!r}")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)

    def __reduce__(self):
        raise TypeError("not picklable")


def _check_dtype(dtype) -> np.dtype:
    if not isinstance(dtype, _DType):
        raise Refused(f"a numpy array or scalar is built with {type(dtype).__name__} as its dtype")
    return dtype.dtype


def _check_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise Refused(f"numpy array shape {str(shape)[:80]} is not a tuple of at most {_MAX_NDIM} sizes")
    return shape


def _array(data, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """The array ``shape`` of ``dtype`` held by ``data``, whose length must be exactly what the shape needs (a
    shape too large for its data is refused before anything is allocated)."""
    if isinstance(data, pickle.PickleBuffer):
        data = bytes(data.raw())
    if not isinstance(data, (bytes, bytearray)):
        raise Refused(f"numpy array data is a {type(data).__name__}, not bytes (object arrays are not read)")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) != need:
        raise Refused(f"numpy array of shape {shape} and dtype {dtype} needs {need} bytes; its data holds "
                      f"{len(data)}")
    flat = np.frombuffer(data, dtype=dtype) if need else np.empty(0, dtype=dtype)
    out = flat.reshape(shape, order=order).copy(order="K")
    return out if dtype.isnative else out.astype(dtype.newbyteorder("="))


class _ArrayBuilder(_Inert):
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an empty placeholder; ``BUILD`` hands it
    ``(version, shape, dtype, fortran, data)`` and it becomes :attr:`array`."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state) -> None:
        if self.array is not None:
            raise Refused("its pickle sets a numpy array's state twice")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4 and isinstance(state[2], bool)):
            raise Refused(f"numpy array state {str(state)[:80]} is not (shape, dtype, fortran, data)")
        shape, dtype, fortran, data = state
        self.array = _array(data, _check_dtype(dtype), _check_shape(shape), "F" if fortran else "C")


def _reconstruct(subtype, shape, typecode) -> _ArrayBuilder:
    if subtype is not _NDARRAY:
        raise Refused(f"a numpy array is reconstructed as {subtype!r}, not numpy.ndarray")
    return _ArrayBuilder()


def _frombuffer(buf, dtype, shape, order) -> np.ndarray:
    """Protocol 5's ``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)``."""
    if order not in ("C", "F"):
        raise Refused(f"numpy array order {order!r}")
    return _array(buf, _check_dtype(dtype), _check_shape(shape), order)


def _scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar(dtype, bytes)``: one number (or string) of a plain dtype."""
    dt = _check_dtype(dtype)
    return _array(data, dt, (), "C")[()]


def _encode(text, encoding="utf-8"):
    """``_codecs.encode(text, 'latin1')``: how pickle protocol 2 writes ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("its pickle calls _codecs.encode other than to write bytes")
    return text.encode("latin1")


def _bytes(*args):
    """``bytes()``: how protocols 0-2 write an empty ``bytes``."""
    if args:
        raise Refused("its pickle calls bytes with arguments")
    return b""


def _set(items=()):
    return set(_items(items))


def _frozenset(items=()):
    return frozenset(_items(items))


def _items(items):
    if not isinstance(items, (list, tuple)):
        raise Refused(f"a set is built from a {type(items).__name__}")
    return items


def ordered_dict(*args):
    """``collections.OrderedDict()`` as pickles create it (empty, items set afterwards)."""
    if args:
        raise Refused("its pickle builds an OrderedDict from arguments")
    return collections.OrderedDict()


class InertObject:
    """An instance of a known statistics class (:data:`INERT_CLASSES`): creating it and ``BUILD`` on it only
    record the state the pickle hands over; nothing of the class's code exists here."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        if args or kwargs:
            raise Refused(f"its pickle creates a {cls.qualname} with arguments")
        self = object.__new__(cls)
        object.__setattr__(self, "state", None)
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        if self.state is not None or not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise Refused(f"the state of a {self.qualname} is not one dict of attributes")
        object.__setattr__(self, "state", state)

    def __reduce__(self):
        raise TypeError("not picklable")


class InertDict(dict):
    """A ``dict`` subclass of a known statistics class (dnnlib's ``EasyDict``): its items, nothing else."""

    qualname = "?"

    def __setstate__(self, state) -> None:
        if state not in (None, {}):
            raise Refused(f"its pickle sets attributes on a {self.qualname}")

    def __reduce__(self):
        raise TypeError("not picklable")


def _inert_class(module: str, name: str, kind: str, cache: dict) -> type:
    key = f"{module}.{name}"
    if key not in cache:
        base = InertObject if kind == "object" else InertDict
        cache[key] = type(name, (base,), {"qualname": key, "__slots__": ()} if kind == "object" else
                          {"qualname": key})
    return cache[key]


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor(cls, object, None)``: how protocols 0 and 1 create an instance."""
    if not (isinstance(cls, type) and issubclass(cls, InertObject)) or base is not _OBJECT or state is not None:
        raise Refused("its pickle calls copyreg._reconstructor on something other than a known statistics class")
    return cls.__new__(cls)


_NUMPY = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DType,
    ("builtins", "object"): _OBJECT,
    ("_codecs", "encode"): _encode,
    ("builtins", "bytes"): _bytes,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("collections", "OrderedDict"): ordered_dict,
    ("copyreg", "_reconstructor"): _reconstructor,
}
for _core in ("numpy.core", "numpy._core"):
    _NUMPY[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _NUMPY[(f"{_core}.multiarray", "scalar")] = _scalar
    _NUMPY[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


# --- tensors from storage records ------------------------------------------------------------------------------

class StorageType(_Inert):
    """What ``GLOBAL torch FloatStorage`` stands for: a dtype, nothing callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class Record(_Inert):
    """A storage record named by the pickle (``data/<key>`` of an archive): read only when a tensor views it."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class TensorRef(_Inert):
    """A tensor as the pickle describes it: a view (offset, size, stride) of a record."""

    __slots__ = ("record", "offset", "size", "stride")

    def __init__(self, record: Record, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.record, self.offset, self.size, self.stride = record, offset, size, stride


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise Refused(f"tensor {what} {str(value)[:60]} is not a tuple of integers")
    return tuple(value)


def rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    """A tensor viewing ``storage``, with every index checked to fall inside it (the values are read later)."""
    if not isinstance(storage, Record):
        raise Refused("a tensor is built from something that is not a storage record")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
        raise Refused(f"tensor offset {storage_offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise Refused(f"tensor size {size} and stride {stride} do not describe a tensor")
    n = storage.numel
    if all(size):
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= n:
            raise Refused(f"tensor of size {size}, stride {stride}, offset {storage_offset} reaches past its "
                          f"storage of {n} elements")
    elif storage_offset > n:
        raise Refused(f"tensor offset {storage_offset} past its storage of {n} elements")
    return TensorRef(storage, storage_offset, size, stride)


def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                      *_metadata) -> TensorRef:
    if backward_hooks is not None and not (isinstance(backward_hooks, dict) and not backward_hooks):
        raise Refused("a tensor comes with backward hooks")
    return rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_ignored) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise Refused("a parameter is built from something that is not a tensor")
    if backward_hooks is not None and not (isinstance(backward_hooks, dict) and not backward_hooks):
        raise Refused("a parameter comes with backward hooks")
    return data


class TensorUnpickler(pickle.Unpickler):
    """Tensors described by storage records (``persistent_load``), and refusal of everything else; subclasses
    add the globals their format needs in :meth:`find_extra`."""

    def __init__(self, file):
        super().__init__(file)
        self.records: dict[str, Record] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return ordered_dict
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name, STORAGE_DTYPES[name])
        found = self.find_extra(module, name)
        if found is None:
            raise Refused(f"its pickle names the global {module}.{name}, which fidkit does not build "
                          f"({self.allowed})")
        return found

    #: what the reader builds, in words (for the refusal message)
    allowed = "only tensors and containers are built"

    def find_extra(self, module: str, name: str):
        return None

    def persistent_load(self, pid):
        # zip archives: ('storage', type, key, location, numel); the legacy format adds view metadata (None)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise Refused(f"unknown persistent record {str(pid)[:80]}")
        if len(pid) == 6 and pid[5] is not None:
            raise Refused(f"storage record {str(pid[2])[:40]} is a view of another storage")
        _, kind, key, location, numel = pid[:5]
        if not isinstance(kind, StorageType):
            raise Refused(f"storage record {str(key)[:40]} has no storage type")
        if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+", key):
            raise Refused(f"storage record name {str(key)[:40]!r} is not a record name")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise Refused(f"storage record {key} has element count {numel!r}")
        record = self.records.setdefault(key, Record(key, kind.dtype, numel))
        if record.dtype != kind.dtype or record.numel != numel:
            raise Refused(f"storage record {key} is named twice with different types or sizes")
        return record


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class SafeUnpickler(TensorUnpickler):
    """Numpy arrays and scalars, containers, known statistics classes held inert, and (in ``torch.save`` files)
    tensors; every other global is refused with its name."""

    allowed = ("only numpy arrays of numbers, tensors, containers and the known statistics classes "
               f"{', '.join(sorted(f'{m}.{n}' for m, n in INERT_CLASSES))} are read")

    def __init__(self, file, *, tensors: bool = False):
        super().__init__(file)
        self._tensors = tensors
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)  # protocols 0-2 write Python 2's names for these
        if not self._tensors and module.startswith("torch"):
            raise Refused(f"its pickle names the global {module}.{name}; a plain pickle of statistics holds no "
                          "tensors")
        return super().find_class(module, name)

    def find_extra(self, module: str, name: str):
        if (module, name) in _NUMPY:
            return _NUMPY[(module, name)]
        if module == "torch._utils" and name == "_rebuild_parameter" and self._tensors:
            return _rebuild_parameter
        kind = INERT_CLASSES.get((module, name))
        if kind is not None:
            return _inert_class(module, name, kind, self._classes)
        return None

    def persistent_load(self, pid):
        if not self._tensors:
            raise Refused("its pickle refers to external records, which a plain pickle does not have")
        return super().persistent_load(pid)


# --- reading ---------------------------------------------------------------------------------------------------

class _Bounded(io.BytesIO):
    """The pickle's bytes; asking to read past their end is refused (for the opcode scan)."""

    def read(self, n: int = -1) -> bytes:
        left = len(self.getbuffer()) - self.tell()
        if n is not None and n > left:
            raise Refused(f"its pickle declares {n} bytes where {left} remain (truncated or forged)")
        return super().read(n)


def scan(data: bytes) -> int:
    """Walk the opcodes of the pickle at the start of ``data`` without building anything: every declared length
    is checked against the bytes that remain.  Returns the pickle's length."""
    f = _Bounded(data)
    try:
        end = 0
        for op, _arg, pos in pickletools.genops(f):
            end = pos
            if op.name == "STOP":
                return f.tell()
    except Refused:
        raise
    except (ValueError, EOFError, struct.error) as e:
        raise Refused(f"its pickle is damaged at byte {end} ({e})") from None
    raise Refused("its pickle ends without a STOP")


def _unpickle(data: bytes, make: Callable[[io.BytesIO], pickle.Unpickler]) -> tuple[Any, pickle.Unpickler, int]:
    """One pickle from the start of ``data``: scanned, then unpickled; returns (object, unpickler, length)."""
    length = scan(data)
    f = io.BytesIO(data)
    unpickler = make(f)
    try:
        obj = unpickler.load()
    except Refused:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, RecursionError, MemoryError) as e:
        raise Refused(f"its pickle cannot be read ({type(e).__name__}: {e})") from None
    return obj, unpickler, length


def resolve(obj, tensor: Callable[[TensorRef], np.ndarray] | None = None):
    """Plain data from what the unpickler built: arrays for array placeholders and tensors (via ``tensor``),
    state dicts for inert objects, ``dict`` for inert dicts; shared objects stay shared."""
    done: dict[int, Any] = {}

    def visit(o, depth: int):
        if depth > _MAX_DEPTH:
            raise Refused(f"its data is nested more than {_MAX_DEPTH} deep")
        if o is None or isinstance(o, (bool, int, float, complex, str, bytes, np.generic, np.ndarray)):
            return o
        key = id(o)
        if key in done:
            return done[key]
        if isinstance(o, _ArrayBuilder):
            if o.array is None:
                raise Refused("a numpy array is created but never given its data")
            out = o.array
        elif isinstance(o, TensorRef):
            if tensor is None:
                raise Refused("a tensor where none is expected")
            out = tensor(o)
        elif isinstance(o, InertObject):
            if o.state is None:
                raise Refused(f"a {o.qualname} is created but never given its state")
            out = visit(o.state, depth + 1)
        elif isinstance(o, dict):  # dict, OrderedDict, InertDict
            out = {}
            done[key] = out
            for k, v in o.items():
                out[visit(k, depth + 1)] = visit(v, depth + 1)
            return out
        elif isinstance(o, list):
            out = []
            done[key] = out
            out.extend(visit(v, depth + 1) for v in o)
            return out
        elif isinstance(o, tuple):
            out = tuple(visit(v, depth + 1) for v in o)
        elif isinstance(o, (set, frozenset)):
            out = type(o)(visit(v, depth + 1) for v in o)
        else:
            raise Refused(f"its data holds a {type(o).__name__!r} ({o!r:.60}), which is not data fidkit reads")
        done[key] = out
        return out

    return visit(obj, 0)


def check_member(info: zipfile.ZipInfo, archive_size: int) -> None:
    """Refuse an archive member whose declared size is impossible: a compressed size beyond the archive, or an
    expansion no real deflate stream reaches (a zip bomb would otherwise be allocated in full)."""
    if info.compress_size > archive_size:
        raise Refused(f"entry {info.filename} claims {info.compress_size} bytes in an archive of {archive_size}")
    limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else 1100 * info.compress_size + 65536
    if info.file_size > limit:
        raise Refused(f"entry {info.filename} claims to expand to {info.file_size} bytes from {info.compress_size}")


def read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, limit: int = _MAX_PICKLE_BYTES) -> bytes:
    check_member(info, archive_size)
    if info.file_size > limit:
        raise Refused(f"entry {info.filename} holds {info.file_size} bytes, more than fidkit reads ({limit})")
    data = z.read(info)
    if len(data) != info.file_size:
        raise Refused(f"entry {info.filename} is truncated")
    return data


def unique_names(names: list[str]) -> list[str]:
    seen, twice = set(), set()
    for n in names:
        (twice if n in seen else seen).add(n)
    return [n for n in seen if n not in twice]


def read_record(z: zipfile.ZipFile, member: str, dtype: torch.dtype, numel: int, archive_size: int) -> torch.Tensor:
    """The record ``member`` as a 1-D tensor of ``numel`` elements of ``dtype`` (its size checked first)."""
    try:
        info = z.getinfo(member)
    except KeyError:
        raise Refused(f"its pickle refers to the record {member}, which is not in the archive") from None
    check_member(info, archive_size)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if info.file_size != numel * itemsize:
        raise Refused(f"record {member} holds {info.file_size} bytes, its header says {numel} x {itemsize}")
    buf = torch.empty(info.file_size, dtype=torch.uint8)
    view, got = memoryview(buf.numpy()), 0
    with z.open(info) as f:
        while got < info.file_size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    if got != info.file_size:
        raise Refused(f"record {member} is truncated")
    return buf.view(dtype)


def _tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every value exactly
        t = t.float()
    return t.contiguous().numpy().copy()


def _error(path: Path, what: str, reason) -> RefusedPickleError:
    return RefusedPickleError(f"{path}: not a readable {what} ({reason}); fidkit reads pickles with an allow-list "
                              "and runs none of their code")


def _read_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    if size > _MAX_PICKLE_BYTES:
        raise Refused(f"it holds {size} bytes, more than fidkit reads as a pickle ({_MAX_PICKLE_BYTES})")
    return path.read_bytes()


def _guard(path: Path, what: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except RefusedPickleError:
        raise
    except Refused as e:
        raise _error(path, what, e) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            TypeError, AttributeError, KeyError, IndexError, RuntimeError, MemoryError, RecursionError,
            UnicodeDecodeError, struct.error) as e:
        raise _error(path, what, f"{type(e).__name__}: {e}") from None


def load_pickle(path: str | os.PathLike) -> Any:
    """A plain pickle file (EDM2's reference statistics, cd-FVD's caches) as plain data; see the module."""
    path = Path(path)

    def read():
        data = _read_bytes(path)
        obj, _, length = _unpickle(data, lambda f: SafeUnpickler(f))
        if data[length:].strip(b"\0"):
            raise Refused(f"{len(data) - length} bytes follow the pickle")
        return resolve(obj)
    return _guard(path, "pickle", read)


_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001


def load_torch(path: str | os.PathLike) -> Any:
    """A ``torch.save`` file, zip or legacy format, as plain data: tensors as numpy arrays (on the CPU),
    numpy arrays as themselves; see the module."""
    path = Path(path)
    return _guard(path, "torch.save file", lambda: _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path))


def archive_prefix(z: zipfile.ZipFile) -> str:
    """The folder of the one ``data.pkl`` at the top level of a ``torch.save`` or TorchScript zip archive, after
    checking that no entry under it is stored twice and that its tensors are little-endian."""
    names = z.namelist()
    roots = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(roots) != 1 or names.count(roots[0]) != 1:
        raise Refused(f"{len(roots)} data.pkl entries at its top level" if len(roots) != 1
                      else f"{roots[0]} is stored more than once")
    prefix = roots[0][:-len("data.pkl")]
    repeated = sorted({n for n in names if n.startswith(prefix)} - set(unique_names(names)))
    if repeated:
        raise Refused(f"the entry {repeated[0]} is stored more than once")
    if prefix + "byteorder" in names:
        order = z.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order != "little":
            raise Refused(f"its tensors are stored {order!r}-endian; fidkit reads little-endian files")
    return prefix


def _load_zip(path: Path) -> Any:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            raise Refused("it is a TorchScript archive, not a torch.save file")
        prefix = archive_prefix(z)
        data = read_member(z, z.getinfo(prefix + "data.pkl"), size)
        obj, _, _ = _unpickle(data, lambda f: SafeUnpickler(f, tensors=True))
        flats: dict[str, torch.Tensor] = {}

        def tensor(ref: TensorRef) -> np.ndarray:
            record = ref.record
            if record.key not in flats:
                flats[record.key] = read_record(z, f"{prefix}data/{record.key}", record.dtype, record.numel, size)
            return _tensor_to_numpy(flats[record.key].as_strided(ref.size, ref.stride, ref.offset))
        return resolve(obj, tensor)


def _load_legacy(path: Path) -> Any:
    """``torch.save(..., _use_new_zipfile_serialization=False)``: pickles of the magic number, the protocol
    version and the system's description, then the object, then the list of storage keys, then each storage's
    element count (8 bytes, little-endian) and bytes."""
    data = _read_bytes(path)
    pos = 0

    def plain():
        nonlocal pos
        obj, _, length = _unpickle(data[pos:], lambda f: SafeUnpickler(f))
        pos += length
        return resolve(obj)
    if data[:1] != b"\x80":
        raise Refused("it is neither a zip archive nor a pickle")
    if plain() != _TORCH_MAGIC:
        raise Refused("it is a pickle, not a torch.save file (wrong magic number)")
    if plain() != _TORCH_LEGACY_PROTOCOL:
        raise Refused("unknown torch.save protocol version")
    info = plain()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise Refused("its tensors are not stored little-endian")
    obj, unpickler, length = _unpickle(data[pos:], lambda f: SafeUnpickler(f, tensors=True))
    pos += length
    keys = plain()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise Refused("its list of storage keys is not a list of distinct names")
    records = unpickler.records
    if set(keys) != set(records):
        raise Refused("its storage keys do not match the storages its pickle names")
    flats: dict[str, torch.Tensor] = {}
    for key in keys:
        record = records[key]
        itemsize = torch.empty((), dtype=record.dtype).element_size()
        if pos + 8 > len(data):
            raise Refused(f"storage {key} is truncated")
        (numel,) = struct.unpack("<q", data[pos:pos + 8])
        pos += 8
        nbytes = numel * itemsize
        if numel != record.numel or pos + nbytes > len(data):
            raise Refused(f"storage {key} holds {numel} elements where {record.numel} are named, or is truncated")
        flats[key] = torch.frombuffer(bytearray(data[pos:pos + nbytes]), dtype=torch.uint8).view(record.dtype) \
            if nbytes else torch.empty(0, dtype=record.dtype)
        pos += nbytes

    def tensor(ref: TensorRef) -> np.ndarray:
        return _tensor_to_numpy(flats[ref.record.key].as_strided(ref.size, ref.stride, ref.offset))
    return resolve(obj, tensor)


def sniff(path: str | os.PathLike) -> str:
    """``"zip"``, ``"pickle"`` or ``"other"``, from the file's first bytes (nothing is unpickled)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "other"  # a protocol 0 or 1 pickle, or not a pickle at all


def load_file(path: str | os.PathLike) -> Any:
    """A ``torch.save`` file (zip or legacy) or a plain pickle, whichever ``path`` holds."""
    path = Path(path)
    kind = _guard(path, "pickle", lambda: sniff(path))
    if kind == "zip":
        return load_torch(path)
    legacy = _guard(path, "pickle", lambda: _is_legacy_torch(path))
    return load_torch(path) if legacy else load_pickle(path)


def _is_legacy_torch(path: Path) -> bool:
    """Whether the file starts with torch's magic number (a pickle of one integer: read without unpickling)."""
    with open(path, "rb") as f:
        head = f.read(64)
    try:
        ops = list(pickletools.genops(io.BytesIO(head)))
    except (ValueError, EOFError, struct.error):
        return False
    ints = [arg for op, arg, _ in ops if op.name in ("LONG1", "LONG4", "LONG", "INT")]
    return bool(ints) and ints[0] == _TORCH_MAGIC
