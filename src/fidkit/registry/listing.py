"""``fidkit refs``: the registry as text (a listing of two lines per entry, or one entry in full)."""

from __future__ import annotations

from typing import Any


def _count(row: dict[str, Any]) -> str:
    n = f"{row['n']:,}" if row["n"] is not None else "N not stated"
    coverage = row["coverage"] or "coverage not stated"
    seed = f", seed {row['subset_seed']}" if row["subset_seed"] is not None else ""
    return f"{n} ({coverage}{seed})"


def _network(row: dict[str, Any]) -> str:
    nets = row["network"].split(",")
    prep = row["preprocessing"]
    return ", ".join(f"{net}:{prep}" if "=" not in prep else f"{net}:{dict(p.split('=', 1) for p in prep.split(','))[net]}"
                     for net in nets)


def _cached(row: dict[str, Any]) -> str:
    record = row.get("cached")
    return f"cached, sha256 {record['sha256']}" if record else "not cached"


def _size(row: dict[str, Any]) -> str:
    return f"{row['size_bytes']:,} bytes" if row["size_bytes"] else "size not stated"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no published reference matches"]
    width = max(len(r["name"]) for r in rows)
    out = [f"{len(rows)} published reference(s); 'fidkit refs NAME' shows one in full. Licences are the "
           "publishers'; fidkit redistributes nothing."]
    for r in rows:
        res = f"{r['resolution']}px" if r["resolution"] else "res not stated"
        out.append(f"{r['name']:<{width}}  {r['dataset']}, {res}, {_count(r)}; {_network(r)}; cov/{r['normaliser']}; "
                   f"{','.join(r['metrics'])}; {_cached(r)}")
        out.append(f"{'':<{width}}  {r['url']} ({_size(r)}; licence: {r['licence']}; dataset preprocessing: "
                   f"{r['dataset_preprocessing']})")
    return out


def entry_lines(row: dict[str, Any]) -> list[str]:
    record = row.get("cached")
    lines = [
        f"{row['name']}: {row['dataset']}",
        f"  publisher:             {row['publisher']}",
        f"  url:                   {row['url']}",
        f"  file:                  {row['filename']} ({row['fmt']}; {_size(row)})",
        f"  licence:               {row['licence']}",
        f"  resolution:            {row['resolution'] or 'not stated'}",
        f"  N:                     {_count(row)}",
        f"  dataset preprocessing: {row['dataset_preprocessing']}",
        f"  network and resize:    {_network(row)}",
        f"  feature spaces:        {', '.join(row['spaces'])}",
        f"  covariance divided by: {row['normaliser']}",
        f"  metrics:               {', '.join(row['metrics'])}",
    ]
    if row.get("clip"):
        lines.append(f"  clip sampling:         {row['clip']}")
    lines.append(f"  sha256 pinned:         {row['sha256'] or 'no (none published; recorded at first download)'}")
    lines.append("  cache:                 " + (f"sha256 {record['sha256']} ({record.get('how', '')} "
                                                 f"{record.get('recorded', '')}, from {record.get('url', '')})"
                                                 if record else "not downloaded yet"))
    if row["notes"]:
        lines.append(f"  notes:                 {row['notes']}")
    if row["origin"] != "built-in":
        lines.append(f"  declared in:           {row['origin']}")
    return lines
