"""What an hourly aggregation or backfill run did and how it ends, decided in shopfloor."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shopfloor.aggregation.alerts import Breach
from shopfloor.aggregation.hours import local_hour_index
from shopfloor.aggregation.incremental import IncrementalPlan
from shopfloor.aggregation.outcome import (
    backfill_summary,
    backfill_verdict,
    chunk_row,
    completed_payload,
    fresh_breaches,
    hourly_summary,
    shortfalls,
)
from shopfloor.aggregation.transfer import WriteStats
from shopfloor.aggregation.windows import Window

UTC_ZONE = ZoneInfo("UTC")
H10 = local_hour_index(datetime(2026, 11, 22, 10, tzinfo=UTC), UTC_ZONE)  # 20261122 10


def _plan(first: int, last: int, skipped: Window | None = None) -> IncrementalPlan:
    return IncrementalPlan(windows=[Window(first, last)], closed=Window(first, last),
                           skipped=skipped, deferred=0,
                           closed_through=datetime(2026, 11, 22, 13, tzinfo=UTC))


def test_only_changed_hours_raise_events():
    b1 = Breach("L1", "20261122", "10", "temperature", "max", 50.0, "max", 40.0)
    b2 = Breach("L2", "20261122", "10", "temperature", "max", 50.0, "max", 40.0)
    assert fresh_breaches([b1, b2], {("L2", "20261122", "10")}) == [b2]


def test_an_empty_closed_hour_is_reported_once():
    hours = {("20261122", "10")}
    empty, notes = shortfalls(_plan(H10, H10 + 3), hours, UTC_ZONE, "UTC", first_new=H10)
    assert empty == [H10 + 1, H10 + 2]
    assert notes == ["no readings for hours 20261122 11, 20261122 12 (UTC)"]
    # a later run covering the same hours again reports only what it newly closed
    empty, notes = shortfalls(_plan(H10, H10 + 3), hours, UTC_ZONE, "UTC", first_new=H10 + 2)
    assert (empty, notes) == ([H10 + 2], ["no readings for hour 20261122 12 (UTC)"])


def test_many_empty_hours_are_shortened_and_skipped_hours_named():
    empty, notes = shortfalls(_plan(H10, H10 + 8, skipped=Window(H10 - 5, H10)), set(),
                              UTC_ZONE, "UTC", first_new=0)
    assert len(empty) == 8 and "and 3 more (UTC)" in notes[0]
    assert notes[1].startswith("hours 20261122 05:00 - 20261122 10:00 are older than "
                               "max_catchup_hours")


def test_an_explicit_window_has_no_shortfall():
    assert shortfalls(None, set(), UTC_ZONE, "UTC", first_new=0) == ([], [])


def test_the_summary_and_the_completed_event_count_the_write():
    stats = WriteStats(groups=4, upserted=3, unchanged=1, raw_rows=40,
                       stale=[("L9", "20261121", "23")],
                       hours={("20261122", "11"), ("20261122", "10")}, path="staged")
    summary = hourly_summary(2, stats, 5, 1, 2, 1, "UTC", 1.234)
    assert {k: summary[k] for k in ("windows", "raw_rows", "late_rows", "hours_written",
                                    "empty_hours", "stale_rows", "breaches", "alert_events",
                                    "path", "duration_s", "quality_rows")} == {
        "windows": 2, "raw_rows": 40, "late_rows": 5, "hours_written": 2, "empty_hours": 1,
        "stale_rows": 1, "breaches": 2, "alert_events": 1, "path": "staged",
        "duration_s": 1.23, "quality_rows": 0}
    payload = completed_payload(stats, 1, True, "UTC")
    assert (payload["first_hour"], payload["last_hour"]) == ("20261122 10", "20261122 11")
    assert completed_payload(WriteStats(), 0, False, "UTC")["first_hour"] is None


def test_a_failed_chunk_fails_the_backfill_and_says_how_to_repair():
    ok = chunk_row("w1", WriteStats(groups=2, upserted=2, raw_rows=9, path="in-database"))
    bad = chunk_row("w2", error=RuntimeError("deadlock detected\nDETAIL: ..."))
    assert (ok["status"], ok["groups"], bad["status"], bad["error"]) == (
        "ok", 2, "FAILED", "deadlock detected")
    summary = backfill_summary([ok, bad], 2, 0, 1, 0.5)
    assert (summary["failed"], summary["raw_rows"], summary["path"]) == (1, 9, "in-database")
    assert backfill_verdict([ok]).kind == "completed"
    v = backfill_verdict([ok, bad])
    assert v.kind == "failed" and v.message.startswith("1 of 2 chunks failed (w2: deadlock")
    assert "rerun the same range" in v.message
