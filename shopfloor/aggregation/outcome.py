"""What an hourly aggregation or backfill run did, and the state it ends in: decided here
from its counters, applied by the flow."""

from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from shopfloor.aggregation.alerts import Breach
from shopfloor.aggregation.incremental import (
    IncrementalPlan,
    hour_label,
    hours_without_rows,
)
from shopfloor.aggregation.transfer import WriteStats
from shopfloor.errors import first_line
from shopfloor.outcome import COMPLETED, Verdict
from shopfloor.quality import artifact_scores, worst

SHOWN_HOURS = 5


def fresh_breaches(breaches: Iterable[Breach], changed: set[tuple[str, str, str]]
                   ) -> list[Breach]:
    """The breaches of hours whose values this run changed: only they raise events, so a
    rerun or the late-data overlap never repeats an alert an automation already acted on."""
    return [b for b in breaches if (b.loc_id, b.ymd, b.hh) in changed]


def shortfalls(plan: IncrementalPlan | None, hours: set[tuple[str, str]], tz: ZoneInfo,
               timezone: str, first_new: int) -> tuple[list[int], list[str]]:
    """Closed hours newly closed by this run without any reading, and the notes a
    Degraded state carries.

    An hour re-covered by a later run (the last closed hour is always covered) is not
    reported again (``first_new``: the first hour no earlier run had closed), so one
    empty hour is one notification. A run with an explicit window (no plan) has none.
    """
    if plan is None:
        return [], []
    written = [{"ymd": ymd, "hh": hh} for ymd, hh in hours]
    empty = [i for i in hours_without_rows(plan.closed, written, tz) if i >= first_new]
    notes = []
    if empty:
        shown = ", ".join(hour_label(i) for i in empty[:SHOWN_HOURS])
        more = f" and {len(empty) - SHOWN_HOURS} more" if len(empty) > SHOWN_HOURS else ""
        notes.append(f"no readings for hour{'s' if len(empty) > 1 else ''} {shown}{more} "
                     f"({timezone})")
    if plan.skipped is not None:
        notes.append(f"hours {plan.skipped.label()} are older than max_catchup_hours and "
                     "were not aggregated: run hourly-backfill for them")
    return empty, notes


def hourly_summary(windows: int, stats: WriteStats, late_rows: int, empty_hours: int,
                   breaches: int, events: int, timezone: str, seconds: float,
                   tags: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's summary row (the artifact; the flow's return value adds ``rows``);
    ``tags``: the tag rollup's counters (``RollupStats.summary``), after the rest."""
    return {
        "windows": windows, "raw_rows": stats.raw_rows, "late_rows": late_rows,
        "hours_written": len(stats.hours), "empty_hours": empty_hours,
        "groups": stats.groups, "upserted": stats.upserted, "unchanged": stats.unchanged,
        "stale_rows": len(stats.stale), "breaches": breaches, "alert_events": events,
        "path": stats.path, "timezone": timezone, "duration_s": round(seconds, 2),
        # The quality of the run's weakest window (one quality_score row per window).
        "quality_rows": len(stats.quality), **artifact_scores(worst(stats.quality)),
        **(tags or {}),
    }


def completed_payload(stats: WriteStats, empty_hours: int, incremental: bool,
                      timezone: str) -> dict[str, Any]:
    """The payload of ``shopfloor.hourly.completed``: what was written, first to last hour."""
    hours = sorted(f"{ymd} {hh}" for ymd, hh in stats.hours)
    return {"hours_written": len(hours), "raw_rows": stats.raw_rows, "groups": stats.groups,
            "upserted": stats.upserted, "first_hour": hours[0] if hours else None,
            "last_hour": hours[-1] if hours else None, "empty_hours": empty_hours,
            "incremental": incremental, "timezone": timezone}


CHUNK_COUNTS = ("groups", "upserted", "unchanged", "raw_rows")


def chunk_row(label: str, stats: WriteStats | None = None,
              error: BaseException | None = None) -> dict[str, Any]:
    """One backfill chunk's artifact row: its counts, or ``FAILED`` with the error's first
    line (``stats`` None)."""
    row: dict[str, Any] = {"chunk": label, "status": "ok", "path": "", "groups": 0,
                           "upserted": 0, "unchanged": 0, "raw_rows": 0, "error": "",
                           **artifact_scores(None)}
    if stats is None:
        row.update(status="FAILED", error=first_line(error, 300) if error else "failed")
        return row
    row.update(path=stats.path, **{k: getattr(stats, k) for k in CHUNK_COUNTS})
    row.update(artifact_scores(worst(stats.quality)))
    return row


def backfill_summary(rows: Sequence[dict[str, Any]], chunks: int, breaches: int,
                     concurrency: int, seconds: float) -> dict[str, Any]:
    """A backfill's summary over its chunk rows."""
    return {
        "chunks": chunks, "failed": sum(r["status"] != "ok" for r in rows),
        **{k: sum(r[k] for r in rows) for k in CHUNK_COUNTS},
        "breaches": breaches, "concurrency": concurrency, "duration_s": round(seconds, 2),
        # in-database, staged or portable: how the chunks reached the target
        "path": ", ".join(sorted({r["path"] for r in rows if r["path"]})),
    }


def backfill_verdict(rows: Sequence[dict[str, Any]]) -> Verdict:
    """Failed when a chunk failed (the others stay committed; a rerun repairs it)."""
    failed = [r for r in rows if r["status"] != "ok"]
    if not failed:
        return COMPLETED
    return Verdict("failed", f"{len(failed)} of {len(rows)} chunks failed "
                             f"({failed[0]['chunk']}: {failed[0]['error']}); rerun the "
                             "same range to repair them")
