"""Results read back for a report: JSON result files (``--json`` output, ``EvalResult.to_dict()``) and JSONL logs
(``--log``: one result per line, perhaps with ``step``/``name``/``guidance`` keys added by training code).

A log is one *series* (a training run over checkpoints).  Single-result files given together form one series in
the order given, so ``fidkit report a.json b.json c.json`` draws a curve over three points.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fidkit.errors import BadInputError

#: Records kept per series: a report stays a bounded size however long the log grows (the newest are kept).
MAX_RECORDS = 2000


@dataclasses.dataclass
class Series:
    """Results in order: ``name`` labels the series, ``records`` are result dicts."""

    name: str
    records: list[dict]
    dropped: int = 0                         # records left out beyond MAX_RECORDS


def read_results(path: str | Path) -> list[dict]:
    """The result dicts of one file: a JSON object, a JSON list of objects, or JSON lines.  A line that is not a
    JSON object is an error naming the file and line (a torn last line of a log being written is skipped)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInputError(f"{p}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{p}: is not UTF-8 text (a JSON result or a JSONL log)") from None
    stripped = text.strip()
    if not stripped:
        raise BadInputError(f"{p}: is empty (expected a JSON result or a JSONL log)")
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return [whole]
    if isinstance(whole, list):
        if not all(isinstance(r, dict) for r in whole):
            raise BadInputError(f"{p}: a JSON list of results must hold only objects")
        return whole
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    out = []
    for k, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if k == len(lines) - 1 and not text.endswith("\n") and out:
                break                        # a line still being appended by a running evaluation
            raise BadInputError(f"{p}, line {number}: not JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise BadInputError(f"{p}, line {number}: a result must be a JSON object")
        out.append(record)
    return out


def load_series(paths: list[str | Path]) -> list[Series]:
    """One series per log of several results; single results, in the order given, together as one series."""
    if not paths:
        raise BadInputError("give at least one result file (JSON) or log (JSONL)")
    series: list[Series] = []
    singles: list[dict] = []
    for path in paths:
        records = read_results(path)
        if len(records) == 1:
            singles.append({**records[0], "name": records[0].get("name", Path(path).stem)})
        else:
            series.append(_bounded(Path(path).stem, records))
    if singles:
        series.append(_bounded("runs", singles))
    names = [s.name for s in series]
    for i, s in enumerate(series):           # two logs with the same file name stay apart
        if names.count(s.name) > 1:
            s.name = f"{s.name} ({i + 1})"
    return series


def _bounded(name: str, records: list[dict]) -> Series:
    dropped = max(0, len(records) - MAX_RECORDS)
    return Series(name=name, records=records[dropped:], dropped=dropped)
