"""Threshold breaches of hourly rows against the thresholds in ``location``."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from shopfloor.aggregation.statements import MEASURES
from shopfloor.db.schema import Tables

EVENT_NAME = "shopfloor.threshold.breached"


@dataclass(frozen=True)
class Breach:
    """One statistic of one hour outside its location's limit."""

    loc_id: str
    ymd: str
    hh: str
    measure: str
    statistic: str  # "max" or "avg"
    value: float
    bound: str  # "max" or "min": which limit was crossed
    limit: float

    def describe(self) -> str:
        sign = ">" if self.bound == "max" else "<"
        return (f"{self.measure} {self.statistic} {self.value:.2f} "
                f"{sign} {self.bound} {self.limit:g}")


def load_thresholds(conn: Connection, tables: Tables,
                    loc_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Active locations and their threshold columns, by ``loc_id``."""
    loc = tables.location
    stmt = select(loc).where(loc.c.active.is_(True))
    if loc_ids is not None:
        stmt = stmt.where(loc.c.loc_id.in_(sorted(set(loc_ids))))
    return {r["loc_id"]: dict(r) for r in conn.execute(stmt).mappings()}


def _row_breaches(row: Mapping[str, Any], limits: Mapping[str, Any]) -> list[Breach]:
    found: list[Breach] = []
    key = (row["loc_id"], row["ymd"], row["hh"])
    for m in MEASURES:
        high, low = limits.get(f"{m}_max"), limits.get(f"{m}_min")
        for stat in ("max", "avg"):
            value = row.get(f"{m}_{stat}")
            if value is None:
                continue
            if high is not None and value > high:
                found.append(Breach(*key, m, stat, value, "max", high))
            # An hourly max below the minimum implies the avg is too: report the avg only.
            elif stat == "avg" and low is not None and value < low:
                found.append(Breach(*key, m, stat, value, "min", low))
    return found


def find_breaches(rows: Iterable[Mapping[str, Any]],
                  thresholds: Mapping[str, Mapping[str, Any]]) -> list[Breach]:
    """Every breach: an hourly max or avg above the location's max, or an avg below its min.

    Rows of locations without thresholds (or inactive ones) never breach.
    """
    found: list[Breach] = []
    for row in rows:
        limits = thresholds.get(row["loc_id"])
        if limits is not None:
            found += _row_breaches(row, limits)
    return sorted(found, key=lambda b: (b.loc_id, b.ymd, b.hh, b.measure, b.statistic))


def by_hour(breaches: Iterable[Breach]) -> dict[tuple[str, str, str], list[Breach]]:
    """Breaches grouped by ``(loc_id, ymd, hh)``: one alert event each."""
    grouped: dict[tuple[str, str, str], list[Breach]] = {}
    for b in breaches:
        grouped.setdefault((b.loc_id, b.ymd, b.hh), []).append(b)
    return grouped


def breach_event(loc_id: str, ymd: str, hh: str, breaches: Sequence[Breach],
                 timezone: str) -> dict[str, Any]:
    """Keyword arguments for ``prefect.events.emit_event`` for one breached hour.

    The resource id ``shopfloor.location.<loc_id>`` lets an automation match one
    location or all of them (``shopfloor.location.*``).
    """
    return {
        "event": EVENT_NAME,
        "resource": {"prefect.resource.id": f"shopfloor.location.{loc_id}",
                     "prefect.resource.name": loc_id},
        "payload": {
            "loc_id": loc_id, "ymd": ymd, "hh": hh, "timezone": timezone,
            "breaches": [
                {"measure": b.measure, "statistic": b.statistic, "value": b.value,
                 "bound": b.bound, "limit": b.limit}
                for b in breaches
            ],
        },
    }


def breaches_markdown(breaches: Sequence[Breach], timezone: str, max_lines: int = 500) -> str:
    """A markdown table of the breaches (at most ``max_lines`` rows, then a count)."""
    if not breaches:
        return "No hourly value breached a location threshold."
    lines = [
        f"# Threshold breaches ({len(breaches)}, hours in {timezone})", "",
        "| loc_id | ymd | hh | breach |", "|---|---|---|---|",
    ]
    lines += [f"| {b.loc_id} | {b.ymd} | {b.hh} | {b.describe()} |" for b in breaches[:max_lines]]
    if len(breaches) > max_lines:
        lines += ["", f"... and {len(breaches) - max_lines} more."]
    return "\n".join(lines)
