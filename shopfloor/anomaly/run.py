"""What an ``anomaly-detection`` run judges and how it ends: the hours from its
parameters, its artifact rows, its summary and its final state (the flow only composes
tasks around these)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shopfloor.aggregation.hours import as_utc, local_hour_index
from shopfloor.anomaly.findings import DetectorParams, Finding
from shopfloor.outcome import COMPLETED, Verdict

MAX_ARTIFACT_ROWS = 500
KINDS = ("deviation", "spike", "flatline", "gap")


def plan_hours(start: datetime | None, end: datetime | None, tz: ZoneInfo, lookback_hours: int,
               params: DetectorParams, now: datetime) -> tuple[int, int, int]:
    """Local hour indices ``(first read, first judged, last judged)``.

    Without ``start``/``end``: the ``lookback_hours`` closed hours before ``now`` (the hour
    still open is left for the next run, as the hourly aggregation does). History before
    the window is read for the same-hour medians and the level.
    """
    if start is None:
        last = local_hour_index(now, tz) - 1
        window_first = last - lookback_hours + 1
    else:
        window_first = local_hour_index(as_utc(start, tz), tz)
        last = local_hour_index(as_utc(end, tz), tz) - 1
        last = max(last, window_first)  # a partial hour is judged whole
    first = window_first - params.history_days * 24 - params.level_hours
    return first, window_first, last


def findings_table(findings: list[Finding], new: set[tuple]) -> list[dict[str, Any]]:
    """Rows of the run's findings artifact (new ones first)."""
    ordered = sorted(findings, key=lambda f: (f.key not in new, f.hour_start, f.kind))
    return [{"new": f.key in new, "kind": f.kind, "loc_id": f.loc_id, "measure": f.measure,
             "ymd": f.detail.get("ymd"), "hh": f.detail.get("hh"),
             "hour_start_utc": f.hour_start.isoformat(), "hours": f.hours,
             "score": round(f.score, 2)} for f in ordered[:MAX_ARTIFACT_ROWS]]


def summarise(hourly_rows: int, found: Sequence[Finding], new: Sequence[Finding],
              events: int, timezone: str, seconds: float) -> dict[str, Any]:
    """The run's summary row: findings, new ones per kind, events sent."""
    return {"hourly_rows": hourly_rows, "findings": len(found), "new": len(new),
            "events": events,
            **{f"new_{k}": sum(f.kind == k for f in new) for k in KINDS},
            "timezone": timezone, "duration_s": round(seconds, 2)}


def verdict(hourly_rows: int, new: int, events: int) -> Verdict:
    """Idle when the window had no hourly row; Degraded when more new findings than
    ``max_events`` were found (all stored, not all announced)."""
    if hourly_rows == 0:
        return Verdict("idle", "no hourly rows in the hours to judge")
    if new > events:
        return Verdict("degraded", f"{new} new findings, events sent for the first {events} "
                                   "(max_events): the anomaly table holds them all")
    return COMPLETED
