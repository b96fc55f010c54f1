"""Sources made of shards: URLs (``s3://``, ``gs://``, ``https://``, any fsspec protocol), local globs and brace
lists, each shard a WebDataset tar, a Parquet or Arrow table, or one image file.

The shard list is expanded (:func:`fidkit.data.shards.expand`) and every shard looked up before any is read, so a
missing one is named at once; each gets its fingerprint (size and ETag or modification time), which stamps its
items for resuming and for the check that every torchrun process saw the same images.  Shards are read one after
the other in the expanded order, each as a stream (tars front to back; tables a row group at a time), never
copied to disk.  Under torchrun every process reads every shard and decodes its own share of the images.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, BinaryIO, Callable, Iterator

from fidkit.errors import BadInputError, FidkitError
from fidkit.data.images import IMAGE_SUFFIXES, decode_image
from fidkit.data.files import _with_suffix_tag
from fidkit.data.source import ImageSource, Loaded, Loader, printable
from fidkit.data.shards import expand, filesystem, fingerprints, is_url
from fidkit.data.webdataset import tar_samples
from fidkit.data.parquet import table_rows

#: Bytes fetched per request while streaming a shard from an object store.
STREAM_BLOCK = 8 << 20
#: Items whose labels and captions :attr:`ShardSource.metadata` keeps (beyond it, none are kept: a note says so).
MAX_METADATA_ITEMS = 100_000

_TAR = (".tar", ".tar.gz", ".tgz")
_TABLES = {".parquet": "parquet", ".arrow": "arrow"}


@dataclasses.dataclass
class ShardSource(ImageSource):
    """An :class:`ImageSource` over shards, with what it found about them."""

    #: The shards, in the order read.
    shards: list[str] = dataclasses.field(default_factory=list)
    #: Each shard's fingerprint (:func:`fidkit.data.shards.fingerprint`), taken when the source was opened.
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Labels and captions by item name (WebDataset ``cls``/``txt``/``json``; table columns ``label``, ``text``,
    #: ``caption``), filled while reading, for the first :data:`MAX_METADATA_ITEMS` items.
    metadata: dict[str, dict] = dataclasses.field(default_factory=dict)


def shard_kind(url: str) -> str:
    path = url.split("?", 1)[0] if url.startswith(("http://", "https://")) else url
    name = path.lower()
    if name.endswith(_TAR):
        return "tar"
    ext = os.path.splitext(name)[1]
    if ext in _TABLES:
        return _TABLES[ext]
    if ext in IMAGE_SUFFIXES:
        return "image"
    raise BadInputError(f"{printable(url)}: unsupported shard type; expected .tar (WebDataset), .parquet, .arrow or "
                        f"an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")


def open_shards(spec: str | list[str], *, limit: int | None = None, storage_options: dict[str, Any] | None = None,
                image_column: str | None = None) -> ShardSource:
    """The images of a shard list: a string to expand, or a list of shard names (each expanded too)."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise BadInputError("an empty list of shards")
    urls = [u for s in specs for u in expand(s, storage_options=storage_options)]
    if len(set(urls)) != len(urls):
        raise BadInputError(f"{printable(specs[0])}...: a shard is named more than once; it would count twice")
    kinds = [shard_kind(u) for u in urls]
    prints = fingerprints(urls, storage_options=storage_options)
    desc = printable(spec if isinstance(spec, str) else
                     (specs[0] if len(specs) == 1 else f"{specs[0]} and {len(specs) - 1} more shard lists"))
    source: ShardSource

    def keep(name: str, meta: dict) -> None:
        if len(source.metadata) < MAX_METADATA_ITEMS:
            source.metadata[name] = meta
        else:
            source.note(f"{desc}: labels and captions are kept for the first {MAX_METADATA_ITEMS:,} items only")

    def items() -> Iterator[tuple[str, Loader]]:
        given = 0
        for url, kind in zip(urls, kinds):
            if kind == "tar":
                shard = tar_samples(url, _opener(url, storage_options, sequential=True), image_key=image_column,
                                    notes=source.note, metadata=keep)
            elif kind == "image":
                shard = _one(printable(url), _image_loader(url, storage_options))
            else:
                shard = table_rows(url, _opener(url, storage_options, sequential=False), kind, column=image_column,
                                   metadata=keep)
            if limit is not None and given >= limit:
                return
            for item in shard:
                given += 1
                yield item
                if limit is not None and given >= limit:
                    shard.close()  # reads nothing more of the shard
                    return

    count = len(urls) if all(k == "image" for k in kinds) else None
    if count is not None and limit is not None:
        count = min(count, limit)
    stamp_of = _stamps({printable(u): p for u, p in prints.items()})
    source = ShardSource(desc, count, items, stamp=stamp_of, shards=urls, fingerprints=prints)
    return source


def _one(name: str, loader: Loader) -> Iterator[tuple[str, Loader]]:
    yield name, loader


def _stamps(prints: dict[str, str]) -> Callable[[str], str | None]:
    """An item's stamp: its shard's fingerprint.  Item names are ``SHARD:MEMBER`` (or the shard itself, for an
    image file); the shard is found by cutting the name at each colon from the right."""
    def stamp(name: str) -> str | None:
        if name in prints:
            return prints[name]
        cut = len(name)
        while (cut := name.rfind(":", 0, cut)) > 0:
            if name[:cut] in prints:
                return prints[name[:cut]]
        return None
    return stamp


def _opener(url: str, storage_options: dict[str, Any] | None, *, sequential: bool) -> Callable[[], BinaryIO]:
    """A function that opens a shard for reading: front to back in large blocks (``sequential``: tars), or with
    random access (tables read their footer first)."""
    if not is_url(url):
        return lambda: open(url, "rb")
    fs, path = filesystem(url, storage_options)
    if url.startswith(("http://", "https://")):
        # block_size=0 streams one GET front to back (no range requests, which not every server answers)
        return lambda: fs.open(path, "rb", block_size=0) if sequential else fs.open(path, "rb")
    if sequential:
        return lambda: fs.open(path, "rb", block_size=STREAM_BLOCK, cache_type="readahead")
    return lambda: fs.open(path, "rb")


def _image_loader(url: str, storage_options: dict[str, Any] | None) -> Loader:
    """An image stored as a file of its own: fetched by the decoding thread, so fetches overlap."""
    name = printable(url)

    def load() -> Loaded:
        try:
            if is_url(url):
                fs, path = filesystem(url, storage_options)
                data = fs.cat_file(path)
            else:
                with open(url, "rb") as f:
                    data = f.read()
        except FidkitError:
            raise
        except Exception as e:  # noqa: BLE001  (every transport has its own errors: name the file)
            raise BadInputError(f"{name}: cannot read ({type(e).__name__}: {e})") from None
        return _with_suffix_tag(decode_image(data, name), url.split("?", 1)[0])
    return load
