"""What an anomaly-detection run judges and how it ends, decided in shopfloor."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shopfloor.aggregation.hours import local_hour_index
from shopfloor.anomaly.findings import DetectorParams, Finding
from shopfloor.anomaly.run import findings_table, plan_hours, summarise, verdict

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
H10 = local_hour_index(datetime(2026, 11, 22, 10, tzinfo=UTC), UTC_ZONE)


def _f(kind: str, hour: int) -> Finding:
    return Finding(kind, "L1", "temperature", datetime(2026, 11, 22, hour, tzinfo=UTC), 1,
                   4.123, {"ymd": "20261122", "hh": f"{hour:02d}"})


def test_a_run_without_a_window_judges_the_closed_hours_before_its_time():
    params = DetectorParams(history_days=7, level_hours=24)
    first, window_first, last = plan_hours(None, None, UTC_ZONE, 24, params, NOW)
    assert (window_first, last) == (H10 - 24, H10 - 1)  # the open hour 10 is left
    assert first == window_first - 7 * 24 - 24  # history and level read before


def test_an_explicit_window_judges_a_partial_hour_whole():
    start = datetime(2026, 11, 22, 8, tzinfo=UTC)
    end = datetime(2026, 11, 22, 8, 20, tzinfo=UTC)
    _, window_first, last = plan_hours(start, end, UTC_ZONE, 24, DetectorParams(), NOW)
    assert window_first == last == H10 - 2


def test_new_findings_come_first_in_the_artifact():
    old, new = _f("spike", 5), _f("gap", 7)
    rows = findings_table([old, new], {new.key})
    assert [(r["new"], r["kind"], r["hh"], r["score"]) for r in rows] == [
        (True, "gap", "07", 4.12), (False, "spike", "05", 4.12)]


def test_summary_and_every_outcome():
    found = [_f("spike", 5), _f("gap", 7), _f("gap", 8)]
    summary = summarise(40, found, found[1:], 2, "UTC", 0.123)
    assert (summary["findings"], summary["new"], summary["new_gap"], summary["new_spike"],
            summary["duration_s"]) == (3, 2, 2, 0, 0.12)
    assert verdict(40, 2, 2).kind == "completed"
    assert verdict(0, 0, 0).kind == "idle"
    v = verdict(40, 5, 3)
    assert v.kind == "degraded" and v.message.startswith("5 new findings, events sent for "
                                                         "the first 3")
