"""The incremental plan: closed hours only, catch-up from the closed-through watermark."""

from datetime import UTC, datetime, timedelta

from shopfloor.aggregation.hours import hour_start, index_of_ymd_hh, resolve_timezone
from shopfloor.aggregation.incremental import (
    hours_without_rows,
    later,
    plan_incremental,
)
from shopfloor.aggregation.windows import Window

UTC_TZ = resolve_timezone("UTC")
NY = resolve_timezone("America/New_York")
NOW = datetime(2024, 1, 5, 16, 2, tzinfo=UTC)  # 16:02: hour 16 is still open
H16 = index_of_ymd_hh("20240105", "16")


def test_first_run_covers_only_the_last_closed_hour_not_the_open_one():
    plan = plan_incremental(NOW, UTC_TZ)
    assert plan.windows == [Window(H16 - 1, H16)]
    assert plan.closed == Window(H16 - 1, H16) and plan.skipped is None
    assert plan.closed_through == datetime(2024, 1, 5, 16, tzinfo=UTC)


def test_late_rows_in_the_open_hour_are_left_for_the_next_run():
    plan = plan_incremental(NOW, UTC_TZ, late=[("A", H16), ("B", H16 + 3), ("C", H16 - 4)])
    assert plan.windows == [Window(H16 - 4, H16 - 3, ("C",)), Window(H16 - 1, H16)]
    assert plan.deferred == 2


def test_a_run_after_an_outage_covers_every_closed_hour_since_the_watermark():
    plan = plan_incremental(NOW, UTC_TZ, closed_through=datetime(2024, 1, 5, 11, tzinfo=UTC))
    assert plan.windows == [Window(H16 - 5, H16)]  # 11, 12, 13, 14, 15
    assert plan.closed_through == datetime(2024, 1, 5, 16, tzinfo=UTC)


def test_the_next_run_writes_the_hour_the_previous_run_left_open():
    first = plan_incremental(NOW, UTC_TZ)
    second = plan_incremental(NOW + timedelta(hours=1), UTC_TZ, closed_through=first.closed_through)
    assert second.windows == [Window(H16, H16 + 1)]


def test_catch_up_is_bounded_and_names_the_hours_it_skipped():
    plan = plan_incremental(NOW, UTC_TZ, closed_through=datetime(2024, 1, 1, tzinfo=UTC),
                            max_catchup_hours=3)
    assert plan.windows == [Window(H16 - 3, H16)]
    assert plan.skipped == Window(index_of_ymd_hh("20240101", "00"), H16 - 3)


def test_a_late_run_of_an_older_slot_still_covers_its_own_hour():
    plan = plan_incremental(NOW, UTC_TZ, closed_through=NOW + timedelta(hours=5))
    assert plan.windows == [Window(H16 - 1, H16)]


def test_hours_in_a_zone_with_a_half_hour_offset_end_at_local_hours():
    kolkata = resolve_timezone("Asia/Kolkata")  # 16:02 UTC is 21:32 local
    plan = plan_incremental(NOW, kolkata)
    assert plan.closed_through == datetime(2024, 1, 5, 15, 30, tzinfo=UTC)


def test_watermarks_only_move_forward():
    t = datetime(2024, 1, 5, 16, tzinfo=UTC)
    assert later(None, t) and later((t - timedelta(seconds=1)).isoformat(), t)
    assert not later(t.isoformat(), t) and not later((t + timedelta(hours=1)).isoformat(), t)


def test_hours_without_rows_skip_the_hour_a_spring_forward_removes():
    # 2024-03-10 02:00 does not exist in New York.
    first = index_of_ymd_hh("20240310", "00")
    window = Window(first, first + 4)
    rows = [{"ymd": "20240310", "hh": "00"}, {"ymd": "20240310", "hh": "03"}]
    assert hours_without_rows(window, rows, NY) == [first + 1]
    assert hour_start(first + 2, NY) == hour_start(first + 3, NY)


def test_reading_time_lateness_counts_back_from_the_watermark_or_the_first_run():
    from shopfloor.aggregation.late import late_since

    now = datetime(2026, 1, 1, 10, 2, tzinfo=UTC)
    mark = datetime(2026, 1, 1, 9, 58, tzinfo=UTC)
    assert late_since(mark, timedelta(minutes=60), now) == datetime(2026, 1, 1, 8, 58, tzinfo=UTC)
    # no watermark yet: only the allowance before the run, history is a backfill's
    assert late_since(None, timedelta(minutes=60), now) == datetime(2026, 1, 1, 9, 2, tzinfo=UTC)
