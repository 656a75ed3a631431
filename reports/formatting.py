"""Rendering report rows as a text table, CSV or JSON (the command and the API share it)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any


def plain(value: Any) -> Any:
    """A JSON/CSV-friendly value: ISO dates, everything else unchanged."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def rows_as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in asdict(row).items()} for row in rows]


def render_json(*, name: str, columns: Sequence[str], rows: Sequence[Any]) -> str:
    return json.dumps({"report": name, "columns": list(columns), "rows": rows_as_dicts(rows)})


def render_csv(*, columns: Sequence[str], rows: Sequence[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows_as_dicts(rows):
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return out.getvalue()


def render_table(*, columns: Sequence[str], rows: Sequence[Any]) -> str:
    """Aligned columns; numbers right-aligned with thousands separators, for people."""
    cells = [list(columns)]
    numeric = [False] * len(columns)
    for row in rows_as_dicts(rows):
        line = []
        for i, column in enumerate(columns):
            value = row[column]
            if isinstance(value, int) and not isinstance(value, bool):
                numeric[i] = True
                line.append(f"{value:,}")
            else:
                line.append("" if value is None else str(value))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for n, line in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if numeric[i] and n else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not rows:
        lines.append("(no rows)")
    return "\n".join(lines) + "\n"
