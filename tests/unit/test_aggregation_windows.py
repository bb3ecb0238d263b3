"""Windows: explicit, whole days, last closed hour, chunks and late-data runs."""

from datetime import UTC, date, datetime

import pytest

from shopfloor.aggregation.hours import index_of_ymd_hh, resolve_timezone
from shopfloor.aggregation.windows import (
    DEFAULT_CHUNK_HOURS,
    MAX_LOC_FILTER,
    Window,
    chunks,
    chunks_share_days,
    date_range_window,
    explicit_window,
    last_closed_hour,
    merge_hours,
    plan_chunk_concurrency,
    plan_windows,
)
from shopfloor.errors import ShopfloorError

NY = resolve_timezone("America/New_York")


def test_explicit_window_covers_whole_local_hours():
    w = explicit_window(datetime(2024, 1, 5, 10, 20), datetime(2024, 1, 5, 12, 1), NY)
    assert (w.first, w.last) == (index_of_ymd_hh("20240105", "10"),
                                 index_of_ymd_hh("20240105", "13"))
    assert w.bounds(NY) == (datetime(2024, 1, 5, 15, tzinfo=UTC),
                            datetime(2024, 1, 5, 18, tzinfo=UTC))


def test_aware_start_and_end_are_converted_to_the_zone():
    w = explicit_window(datetime(2024, 1, 5, 15, tzinfo=UTC), datetime(2024, 1, 5, 16, tzinfo=UTC),
                        NY)
    assert w.label() == "20240105 10:00 - 20240105 11:00"


@pytest.mark.parametrize("end", [datetime(2024, 1, 5, 10), datetime(2024, 1, 4)])
def test_end_not_after_start_is_a_clear_error(end):
    with pytest.raises(ShopfloorError, match="must be after start"):
        explicit_window(datetime(2024, 1, 5, 10), end, NY)


@pytest.mark.parametrize(("day", "real_hours"), [(date(2024, 3, 10), 23),
                                                 (date(2024, 11, 3), 25),
                                                 (date(2024, 6, 1), 24)])
def test_a_local_day_spans_its_real_hours_in_24_clock_hour_indexes(day, real_hours):
    # 2024-03-10 skips 02:00 in New York; 2024-11-03 has 01:00 twice (one bucket).
    w = date_range_window(day, day, NY)
    start, end = w.bounds(NY)
    assert w.hours == 24
    assert (end - start).total_seconds() == real_hours * 3600


def test_end_date_before_start_date_is_a_clear_error():
    with pytest.raises(ShopfloorError, match="end_date"):
        date_range_window(date(2024, 2, 1), date(2024, 1, 31), NY)


def test_last_closed_hour_is_the_hour_before_now():
    w = last_closed_hour(datetime(2024, 1, 5, 15, 30, tzinfo=UTC), NY)
    assert w.label() == "20240105 09:00 - 20240105 10:00"


def test_chunks_cover_the_window_exactly():
    w = date_range_window(date(2024, 1, 1), date(2024, 1, 31), NY)
    parts = chunks(w, 100)
    assert parts[0].first == w.first and parts[-1].last == w.last
    assert all(a.last == b.first for a, b in zip(parts, parts[1:], strict=False))
    assert [p.hours for p in parts] == [100] * 7 + [44]


def test_chunk_hours_below_one_is_a_clear_error():
    with pytest.raises(ShopfloorError, match="chunk_hours"):
        chunks(Window(0, 10), 0)


def test_merge_hours_makes_one_window_per_run_of_hours():
    got = merge_hours([("B", 11), ("A", 10), ("A", 11), ("C", 20), ("A", 12)])
    assert got == [Window(10, 13, ("A", "B")), Window(20, 21, ("C",))]


def test_an_hour_for_every_location_drops_the_location_filter():
    assert merge_hours([("A", 5), (None, 6)]) == [Window(5, 7)]


def test_too_many_locations_drop_the_location_filter():
    pairs = [(f"L{i}", 1) for i in range(MAX_LOC_FILTER + 1)]
    assert merge_hours(pairs) == [Window(1, 2)]


NOW = datetime(2024, 1, 5, 15, 30, tzinfo=UTC)  # 10:30 in New York


def test_plan_windows_with_start_and_end_is_the_explicit_window():
    got = plan_windows(datetime(2024, 1, 5, 10, 20), datetime(2024, 1, 5, 12, 1), NY, NOW,
                       late=[("A", 1)])
    assert [w.label() for w in got] == ["20240105 10:00 - 20240105 13:00"]


def test_plan_windows_incremental_merges_late_hours_with_the_last_closed_hour():
    closed = index_of_ymd_hh("20240105", "09")
    got = plan_windows(None, None, NY, NOW, late=[("A", closed - 1), ("B", closed - 5)])
    assert got == [Window(closed - 5, closed - 4, ("B",)), Window(closed - 1, closed + 1)]
    assert plan_windows(None, None, NY, NOW) == [Window(closed, closed + 1)]


@pytest.mark.parametrize(("start", "end", "message"), [
    (datetime(2024, 1, 5), None, "give both start and end"),
    (None, datetime(2024, 1, 5), "give both start and end"),
    (datetime(2024, 1, 5, 12), datetime(2024, 1, 5, 12), "must be after start"),
])
def test_plan_windows_refuses_half_or_backward_windows(start, end, message):
    with pytest.raises(ShopfloorError, match=message):
        plan_windows(start, end, NY, NOW)


@pytest.mark.parametrize(("hours", "shared"), [(24, False), (48, False), (168, False),
                                               (1, True), (6, True), (12, True), (36, True)])
def test_only_whole_day_chunks_keep_their_days_to_themselves(hours, shared):
    assert chunks_share_days(hours) is shared


def test_the_default_chunk_is_a_week_of_whole_local_days():
    berlin = resolve_timezone("Europe/Berlin")  # March 31 is a 23-hour day there
    window = date_range_window(date(2024, 3, 1), date(2024, 3, 31), berlin)
    parts = chunks(window, DEFAULT_CHUNK_HOURS)
    assert not chunks_share_days(DEFAULT_CHUNK_HOURS)
    assert len(parts) == 5 and parts[0].hours == 168 and parts[-1].hours == 3 * 24


LIMIT = "shopfloor-warehouse-db"


@pytest.mark.parametrize(("args", "running", "queue"), [
    ((4, None, True, 168, "postgresql"), 4, False),   # no limit: as asked
    ((4, 1, True, 168, "postgresql"), 2, True),       # 1 slot, piped: one writes, one aggregates
    ((4, 1, False, 168, "postgresql"), 1, False),     # 1 slot, in-database: one at a time
    ((4, 2, True, 168, "postgresql"), 2, False),      # no more than the slots
    ((1, 1, True, 168, "postgresql"), 1, False),      # one asked: one
    ((4, 8, False, 168, "postgresql"), 4, False),     # more slots than asked
    ((4, None, False, 12, "postgresql"), 1, False),   # chunks sharing days
    ((4, 1, True, 36, "postgresql"), 1, False),
    ((4, None, False, 168, "sqlite"), 1, False),      # SQLite: one writer
])
def test_backfill_concurrency_follows_the_limit_the_days_and_the_target(args, running, queue):
    plan = plan_chunk_concurrency(*args, LIMIT)
    assert (plan.running, plan.queue) == (running, queue)
    assert bool(plan.why) == (running < args[0])
