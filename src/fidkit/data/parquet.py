"""Parquet and Arrow tables of encoded images, read one row group (or record batch) at a time.

The image column is, by default, the one Hugging Face datasets writes: a struct with ``bytes`` and ``path``
(``Image()`` feature), named ``image`` or the only such struct; else the only binary column.  ``image_column``
(``--image-column NAME``) names it when there are several, or a plain binary column.  Rows keep the table's order.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Callable, Iterator

from fidkit.errors import BadInputError, FidkitError
from fidkit.data.images import decode_image
from fidkit.data.files import _with_suffix_tag
from fidkit.data.shards import open_stream
from fidkit.data.source import Loader, printable

#: Columns whose values are kept as a row's metadata when present (small: labels and captions).
METADATA_COLUMNS = ("label", "labels", "cls", "text", "caption")


def _pyarrow(where: str):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
        import pyarrow.ipc  # noqa: F401
    except ImportError:
        raise BadInputError(f"{where}: reading Parquet/Arrow tables needs pyarrow; pip install 'fidkit[cloud]'"
                            ) from None
    return pyarrow


def _is_image_struct(t) -> bool:
    import pyarrow as pa
    if not pa.types.is_struct(t):
        return False
    return t.get_field_index("bytes") >= 0 and _is_binary(t.field("bytes").type)


def _is_binary(t) -> bool:
    import pyarrow as pa
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def image_column(schema, where: str, wanted: str | None) -> str:
    """The column holding the encoded images (see the module's description); an error lists the columns."""
    described = ", ".join(f"{f.name} ({f.type})" for f in schema)
    if wanted is not None:
        if wanted not in schema.names:
            raise BadInputError(f"{where}: no column {wanted!r}; the columns are {described}")
        t = schema.field(wanted).type
        if not (_is_image_struct(t) or _is_binary(t)):
            raise BadInputError(f"{where}: column {wanted!r} is {t}, not encoded image bytes (binary, or a struct "
                                "with 'bytes')")
        return wanted
    structs = [f.name for f in schema if _is_image_struct(f.type)]
    if "image" in structs or len(structs) == 1:
        return "image" if "image" in structs else structs[0]
    binary = [f.name for f in schema if _is_binary(f.type)]
    if not structs and len(binary) == 1:
        return binary[0]
    raise BadInputError(f"{where}: cannot tell which column holds the images (columns: {described}); name it "
                        "with --image-column NAME (image_column='NAME')")


def _batches(where: str, f: BinaryIO, kind: str, columns: Callable[[Any], list[str]]) -> Iterator[Any]:
    pa = _pyarrow(where)
    if kind == "parquet":
        pf = pa.parquet.ParquetFile(f)
        cols = columns(pf.schema_arrow)
        for group in range(pf.num_row_groups):
            yield from pf.read_row_group(group, columns=cols).to_batches()
        return
    try:
        reader = pa.ipc.open_stream(f)  # what Hugging Face datasets caches
    except pa.ArrowInvalid:
        f.seek(0)
        reader = pa.ipc.open_file(f)
        cols = columns(reader.schema)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i).select(cols)
        return
    cols = columns(reader.schema)
    for batch in reader:
        yield batch.select(cols)


def table_rows(url: str, stream: Callable[[], BinaryIO], kind: str, *, column: str | None = None,
               metadata: Callable[[str, dict], None] | None = None) -> Iterator[tuple[str, Loader]]:
    """``(name, loader)`` of every row's image in a ``kind`` ("parquet" or "arrow") table, ``name`` being
    ``URL:ROW`` (with the image's stored path when the row has one)."""
    where = printable(url)
    chosen: list[str] = []
    row = 0

    def columns(schema) -> list[str]:
        chosen.append(image_column(schema, where, column))
        extra = [c for c in METADATA_COLUMNS if c in schema.names and c != chosen[0]] if metadata else []
        return [chosen[0], *extra]

    f = open_stream(stream, where)
    try:
        with f:
            for batch in _batches(where, f, kind, columns):
                values = batch.column(0)
                if _pyarrow(where).types.is_struct(values.type):
                    data = values.field("bytes").to_pylist()
                    paths = (values.field("path").to_pylist() if values.type.get_field_index("path") >= 0
                             else [None] * len(data))
                else:
                    data, paths = values.to_pylist(), [None] * len(values)
                extra = {batch.schema.field(i).name: batch.column(i).to_pylist()
                         for i in range(1, batch.num_columns)}
                for i, (blob, path) in enumerate(zip(data, paths)):
                    name = f"{where}:{row}" + (f" ({printable(str(path))})" if path else "")
                    if blob is None:
                        raise BadInputError(f"{name}: no image bytes in column {chosen[0]!r}"
                                            + (" (the row names a file, which is not read: store the bytes, e.g. "
                                               "datasets' embed_external_files)" if path else ""))
                    if metadata is not None and extra:
                        metadata(name, {k: v[i] for k, v in extra.items()})
                    yield name, _loader(blob, name, path)
                    row += 1
    except FidkitError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{where}: reading failed at row {row} ({type(e).__name__}: {e}); is the table "
                            "truncated, or did the connection drop?") from None


def _loader(blob: bytes, name: str, path: str | None) -> Loader:
    # a stored path tells the format; else the bytes do (JPEG starts FF D8 FF), for the lossy-compression warning
    suffix_name = path if path and os.path.splitext(path)[1] else ("x.jpg" if blob[:3] == b"\xff\xd8\xff" else "x")
    return lambda: _with_suffix_tag(decode_image(blob, name), suffix_name)
