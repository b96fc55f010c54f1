"""The parameters and buffers of a TorchScript archive, read without TorchScript's loader: no code in the file runs.

``torch.jit.load`` compiles the archive's ``code/`` and runs it: a class's
``__setstate__`` executes while the file is read, and TorchScript can open and
create files (``torch.from_file``).  OpenAI publishes CLIP as TorchScript
archives, so fidkit reads them here instead, as data:

* The archive is a zip of one folder: ``data.pkl`` (a protocol-2 pickle of the
  root module object), ``data/<key>`` (the raw bytes of each tensor storage),
  ``code/`` (the classes' TorchScript source), ``constants.pkl``, ``version``,
  ``byteorder``.
* ``data.pkl`` is read by :class:`_Unpickler` (built on :mod:`fidkit._safe_pickle`), which can build nothing but
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

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from fidkit._safe_pickle import Refused, TensorRef, TensorUnpickler, archive_prefix, read_record
from fidkit.errors import WeightsUnavailableError

__all__ = ["ScriptObject", "is_torchscript_archive", "read_torchscript_state_dict"]

_MAX_DEPTH = 64  # modules nested deeper than this are not a network (and would exhaust the stack)


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


class _Unpickler(TensorUnpickler):
    """``data.pkl``'s reader: tensor descriptions, plain containers, inert script objects; nothing else."""

    allowed = ("refused: a TorchScript archive of tensors needs only tensors, containers and the archive's own "
               "classes, held inert")

    def __init__(self, file):
        super().__init__(file)
        self._classes: dict[str, type] = {}

    def find_extra(self, module: str, name: str):
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist",
                                                      "build_tensorlist", "build_list"):
            return _build_list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return _restore_type_tag
        if (module == "__torch__" or module.startswith("__torch__.")) and name.isidentifier():
            return _script_class(f"{module}.{name}", self._classes)
        return None


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
            raise Refused(f"code entry {name} is unreadable ({e})") from e
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
                    raise Refused(f"code entry {name}: cannot read the list {d.group(1)} = [{d.group(2)[:60]}]")
                current[d.group(1).strip("_")] = names
    return out


def _gather(root, classes: dict[str, dict], materialize) -> dict[str, torch.Tensor]:
    """The state dict of the module tree under ``root``, as ``torch.jit.load(...).state_dict()`` orders it."""
    state: dict[str, torch.Tensor] = {}

    def visit(obj: ScriptObject, prefix: str, path: tuple[int, ...]):
        if len(path) > _MAX_DEPTH:
            raise Refused(f"modules nested more than {_MAX_DEPTH} deep at {prefix or 'the root'}")
        if id(obj) in path:
            raise Refused(f"module {prefix.rstrip('.')} contains itself")
        where = prefix.rstrip(".") or "the root module"
        decl = classes.get(obj.qualname)
        if decl is None or not decl["module"]:
            raise Refused(f"{where} is a {obj.qualname}, which the archive's code/ does not declare as a Module")
        attrs = obj._state
        if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
            raise Refused(f"{where} ({obj.qualname}) stores its state through its own __getstate__; reading it "
                           "would mean running the archive's __setstate__")
        declared = decl.get("parameters", []) + decl.get("buffers", [])
        for kind in ("parameters", "buffers"):
            for name in attrs:
                if name not in decl.get(kind, ()):
                    continue
                value = attrs[name]
                if value is None:
                    continue
                if not isinstance(value, TensorRef):
                    raise Refused(f"{prefix}{name} is declared a {kind[:-1]} but holds {type(value).__name__}")
                state[prefix + name] = materialize(value)
        absent = [n for n in declared if n not in attrs]
        if absent:
            raise Refused(f"{where} declares {', '.join(absent[:3])} but the archive holds no value for it")
        for name, value in attrs.items():
            if isinstance(value, ScriptObject) and name not in declared and classes.get(value.qualname, {}).get(
                    "module"):
                visit(value, f"{prefix}{name}.", path + (id(obj),))

    if not isinstance(root, ScriptObject):
        raise Refused(f"data.pkl holds {type(root).__name__}, not a TorchScript module")
    visit(root, "", ())
    return state


def read_torchscript_state_dict(path: str | os.PathLike, what: str = "") -> dict[str, torch.Tensor]:
    """``torch.jit.load(path).state_dict()`` (same names, values, dtypes, shapes and strides, on the CPU), read as
    data: no code from the file runs.  Anything the reader does not build is a
    :class:`~fidkit.errors.WeightsUnavailableError` naming the file; ``what`` names the network in it."""
    path = Path(path)

    def refuse(reason) -> WeightsUnavailableError:
        return WeightsUnavailableError(f"{path}: not a readable {what + ' ' if what else ''}TorchScript archive "
                                       f"({reason}); fidkit reads such archives as data and runs none of their code")
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as z:
            prefix = archive_prefix(z)
            classes = _declarations(z, prefix)

            flats: dict[str, torch.Tensor] = {}

            def materialize(ref: TensorRef) -> torch.Tensor:
                record = ref.record
                if record.key not in flats:
                    flats[record.key] = read_record(z, f"{prefix}data/{record.key}", record.dtype, record.numel, size)
                return flats[record.key].as_strided(ref.size, ref.stride, ref.offset)

            with z.open(prefix + "data.pkl") as f:
                root = _Unpickler(f).load()
            return _gather(root, classes, materialize)
    except WeightsUnavailableError:
        raise
    except Refused as e:
        raise refuse(e) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            TypeError, AttributeError, KeyError, IndexError, RuntimeError, MemoryError, RecursionError,
            UnicodeDecodeError) as e:
        raise refuse(f"{type(e).__name__}: {e}") from e
