"""Entries users add: ``<cache>/references.toml`` (or ``.json``), and the files ``$FIDKIT_REFERENCES`` names
(several joined by the path separator).  Same fields as the built-in entries; every problem is an error naming
the file, the entry and the field; a user entry never shadows a built-in one.

TOML::

    [[reference]]
    name = "ffhq256-mine"
    dataset = "FFHQ 256x256, all 70k"
    url = "https://example.org/ffhq256.npz"
    ...

JSON: ``{"reference": [{...}, ...]}`` or a list of entries.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import fidkit.cache as cache
from fidkit.errors import BadInputError
from fidkit.registry.entry import FIELDS, NOT_STATED, REQUIRED, PublishedReference, check

ENV = "FIDKIT_REFERENCES"
_INT_FIELDS = ("resolution", "n", "subset_seed", "size_bytes")
_TUPLE_FIELDS = ("spaces", "metrics")
_OPTIONAL_TEXT = ("coverage", "sha256", "clip")


def user_files() -> list[Path]:
    """The user files that exist, in the order they are read; a file ``$FIDKIT_REFERENCES`` names must exist."""
    found = [p for p in (cache.cache_dir() / "references.toml", cache.cache_dir() / "references.json") if p.is_file()]
    for text in os.environ.get(ENV, "").split(os.pathsep):
        if text.strip():
            p = Path(text.strip()).expanduser()
            if not p.is_file():
                raise BadInputError(f"${ENV}: {p} is not a file of reference entries")
            found.append(p)
    return found


def load_file(path: Path) -> list[PublishedReference]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # tomllib.TOMLDecodeError and JSONDecodeError too
        raise BadInputError(f"{path}: cannot read the reference entries ({e})") from None
    items = data.get("reference", data.get("references")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BadInputError(f"{path}: expected a list of entries under 'reference' ([[reference]] in TOML)")
    return [_entry(item, f"{path}: entry {i + 1}", path) for i, item in enumerate(items)]


def _entry(item, where: str, path: Path) -> PublishedReference:
    if not isinstance(item, dict):
        raise BadInputError(f"{where}: an entry is a table of fields, got {type(item).__name__}")
    if isinstance(item.get("name"), str):
        where = f"{path}: entry {item['name']!r}"
    unknown = sorted(set(item) - set(FIELDS) - {"origin"})
    if unknown:
        raise BadInputError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    missing = [f for f in REQUIRED if f not in item and f != "network"]
    if missing:
        raise BadInputError(f"{where}: missing field {missing[0]!r}")
    values = dict(item)
    for field in _TUPLE_FIELDS:
        v = values[field]
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise BadInputError(f"{where}: field {field!r} must be a list of strings")
        values[field] = tuple(v)
    for field in _INT_FIELDS:
        v = values.get(field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise BadInputError(f"{where}: field {field!r} must be a whole number (leave it out when not stated)")
    for field in FIELDS:
        v = values.get(field)
        if v is not None and field not in _INT_FIELDS + _TUPLE_FIELDS and not isinstance(v, str):
            raise BadInputError(f"{where}: field {field!r} must be text")
    values.setdefault("network", ",".join(dict.fromkeys(s.split("/", 1)[0] for s in values["spaces"])))
    values.setdefault("dataset_preprocessing", NOT_STATED)
    for field in _INT_FIELDS + _OPTIONAL_TEXT:
        values.setdefault(field, None)
    if values.get("sha256"):
        values["sha256"] = values["sha256"].strip().lower()
    values["origin"] = str(path)
    return check(PublishedReference(**{k: v for k, v in values.items() if k in FIELDS}), str(path))


def user_entries(builtin: dict[str, PublishedReference]) -> list[PublishedReference]:
    out: dict[str, PublishedReference] = {}
    for path in user_files():
        for e in load_file(path):
            if e.name in builtin:
                raise BadInputError(f"{path}: entry {e.name!r}: the name is a built-in published reference "
                                    f"({builtin[e.name].url}); a user entry may not shadow it, choose another name")
            if e.name in out:
                raise BadInputError(f"{path}: entry {e.name!r}: already declared in {out[e.name].origin}")
            out[e.name] = e
    return list(out.values())
