"""Locations and thresholds from a CSV file (``shopfloor hourly load-locations``).

The file has a header row; ``loc_id`` is required, the other columns are those of the
``location`` table (``name``, ``site``, ``<measure>_min``/``<measure>_max`` for
temperature, humidity and pcv_temperature, ``active``), each optional. Lines starting
with ``#`` are comments. An empty cell is NULL (no threshold); ``active`` is
true/false/yes/no/1/0 and defaults to true. The whole file is checked before anything is
written: the first bad row is one error naming its line.
"""

import csv
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from shopfloor.aggregation.locations import THRESHOLDS
from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.errors import UserError

LOC_ID = re.compile(r"^\S{1,32}$")
TEXT_COLUMNS = ("name", "site")
KNOWN = ("loc_id", *TEXT_COLUMNS, *THRESHOLDS, "active")
_TRUE, _FALSE = {"true", "yes", "y", "1", "t"}, {"false", "no", "n", "0", "f"}


@dataclass(frozen=True)
class LocationFile:
    """The checked rows of a location CSV and the columns it sets."""

    columns: tuple[str, ...]
    rows: list[dict[str, Any]]


class _BadRow(ValueError):
    """One problem in one row (the caller adds the line)."""


def _threshold(column: str, cell: str) -> float | None:
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise _BadRow(f"{column} {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadRow(f"{column} {cell!r} is not a finite number")
    return value


def _active(cell: str) -> bool:
    if not cell:
        return True
    if cell.lower() in _TRUE | _FALSE:
        return cell.lower() in _TRUE
    raise _BadRow(f"active {cell!r} is not true or false")


def _row(cells: dict[str, str]) -> dict[str, Any]:
    loc_id = cells["loc_id"]
    if not LOC_ID.match(loc_id):
        raise _BadRow(f"loc_id {loc_id!r} must be 1-32 characters without spaces")
    row: dict[str, Any] = {"loc_id": loc_id, "active": _active(cells.get("active", ""))}
    for c in TEXT_COLUMNS:
        if c in cells:
            if len(cells[c]) > 255:
                raise _BadRow(f"{c} is longer than 255 characters")
            row[c] = cells[c] or None
    for c in THRESHOLDS:
        if c in cells:
            row[c] = _threshold(c, cells[c])
    for measure in ("temperature", "humidity", "pcv_temperature"):
        lo, hi = row.get(f"{measure}_min"), row.get(f"{measure}_max")
        if lo is not None and hi is not None and lo > hi:
            raise _BadRow(f"{measure}_min {lo:g} is above {measure}_max {hi:g}")
    return row


def _header(fields: list[str], where: str) -> tuple[str, ...]:
    names = tuple(f.strip().lower() for f in fields)
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise UserError(f"{where}: unknown column(s) {unknown}; columns are "
                             f"{', '.join(KNOWN)}")
    if "loc_id" not in names:
        raise UserError(f"{where}: the header has no loc_id column")
    if len(set(names)) != len(names):
        raise UserError(f"{where}: a column appears twice in the header")
    return names


def parse_locations(text: str, source: str = "locations.csv") -> LocationFile:
    """Check every row of a location CSV; nothing is returned unless all are good.

    Raises:
        ShopfloorError: one line, ``<source> line N (loc_id X): <problem>``.
    """
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise UserError(f"{source}: no header row (the first line names the columns)")
    parsed = list(csv.reader(line for _, line in lines))
    columns = _header(parsed[0], f"{source} line {lines[0][0]}")
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for (number, _), cells in zip(lines[1:], parsed[1:], strict=True):
        where = f"{source} line {number}"
        if len(cells) != len(columns):
            raise UserError(f"{where}: {len(cells)} cells, the header has "
                                 f"{len(columns)} columns")
        values = {c: v.strip() for c, v in zip(columns, cells, strict=True)}
        where += f" (loc_id {values['loc_id']!r})"
        try:
            row = _row(values)
        except _BadRow as exc:
            raise UserError(f"{where}: {exc}") from None
        if row["loc_id"] in seen:
            raise UserError(f"{where}: loc_id also on line {seen[row['loc_id']]}")
        seen[row["loc_id"]] = number
        rows.append(row)
    if not rows:
        raise UserError(f"{source}: no location rows below the header")
    return LocationFile(tuple(dict.fromkeys((*columns, "active"))), rows)


def read_locations_csv(path: Path) -> LocationFile:
    """:func:`parse_locations` of a file; a missing or unreadable file is one clear line."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path.name}: {exc}") from None
    return parse_locations(text, path.name)


def upsert_locations(conn: Connection, tables: Tables, file: LocationFile,
                     now: datetime) -> tuple[int, int]:
    """Insert new locations and update changed ones; rows not in the file are untouched.

    Only the file's columns are written, so a file without humidity columns keeps the
    stored humidity thresholds. Unchanged rows are not rewritten (their ``updated_at``
    stays).

    Returns:
        (rows inserted or updated, rows unchanged).
    """
    loc = tables.location
    ids = [r["loc_id"] for r in file.rows]
    current = {r["loc_id"]: dict(r) for r in conn.execute(
        select(loc).where(loc.c.loc_id.in_(ids))).mappings()} if len(ids) <= 500 else {
        r["loc_id"]: dict(r) for r in conn.execute(select(loc)).mappings()}
    changed = [dict(r, updated_at=now) for r in file.rows
               if r["loc_id"] not in current
               or any(current[r["loc_id"]][c] != r[c] for c in file.columns)]
    update = [c for c in file.columns if c != "loc_id"] + ["updated_at"]
    upsert(conn, loc, changed, ["loc_id"], update_columns=update)
    return len(changed), len(file.rows) - len(changed)
