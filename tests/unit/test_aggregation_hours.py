"""Local-hour arithmetic across DST changes and fractional offsets."""

from datetime import UTC, datetime, timedelta

import pytest

from shopfloor.aggregation.hours import (
    hour_start,
    index_of_ymd_hh,
    local_hour_index,
    offset_segments,
    resolve_timezone,
    ymd_hh,
)
from shopfloor.errors import ShopfloorError


def local_key(instant: datetime, zone: str) -> tuple[str, str]:
    wall = instant.astimezone(resolve_timezone(zone))
    return wall.strftime("%Y%m%d"), wall.strftime("%H")


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/Berlin",
                                  "Asia/Kolkata", "Australia/Lord_Howe", "Asia/Makassar"])
def test_hour_index_gives_the_wall_clock_hour_minute_by_minute_over_dst_days(zone):
    tz = resolve_timezone(zone)
    for day in (datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 4, 6, tzinfo=UTC),
                datetime(2024, 11, 3, tzinfo=UTC), datetime(2024, 3, 10, tzinfo=UTC)):
        for minute in range(0, 48 * 60, 13):
            t = day + timedelta(minutes=minute)
            assert ymd_hh(local_hour_index(t, tz)) == local_key(t, zone)


def test_both_fall_back_hours_share_one_bucket_and_start_at_the_first():
    tz = resolve_timezone("America/New_York")
    first = datetime(2024, 11, 3, 5, 10, tzinfo=UTC)   # 01:10 EDT
    second = datetime(2024, 11, 3, 6, 10, tzinfo=UTC)  # 01:10 EST
    assert local_hour_index(first, tz) == local_hour_index(second, tz)
    assert hour_start(local_hour_index(second, tz), tz) == datetime(2024, 11, 3, 5, tzinfo=UTC)
    assert ymd_hh(local_hour_index(second, tz)) == ("20241103", "01")


def test_a_skipped_spring_hour_starts_where_the_next_one_does():
    tz = resolve_timezone("Europe/Berlin")
    index = index_of_ymd_hh("20240331", "02")  # 02:00-03:00 does not exist that day
    assert hour_start(index, tz) == hour_start(index + 1, tz) == datetime(
        2024, 3, 31, 1, tzinfo=UTC)


def test_half_hour_zone_hours_start_at_half_past_utc():
    tz = resolve_timezone("Asia/Kolkata")
    index = index_of_ymd_hh("20240105", "10")
    assert hour_start(index, tz) == datetime(2024, 1, 5, 4, 30, tzinfo=UTC)


def test_ymd_hh_round_trips():
    for index in (0, 400_000, 480_123):
        assert index_of_ymd_hh(*ymd_hh(index)) == index


def test_offset_segments_split_at_each_change_to_the_second():
    tz = resolve_timezone("Europe/Berlin")
    segs = offset_segments(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 11, 1, tzinfo=UTC), tz)
    assert [(s.start, s.offset_seconds) for s in segs] == [
        (datetime(2024, 3, 1, tzinfo=UTC), 3600),
        (datetime(2024, 3, 31, 1, tzinfo=UTC), 7200),
        (datetime(2024, 10, 27, 1, tzinfo=UTC), 3600),
    ]
    assert segs[-1].end == datetime(2024, 11, 1, tzinfo=UTC)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:], strict=False))


def test_offset_segments_of_a_fixed_zone_is_one_segment():
    tz = resolve_timezone("Asia/Makassar")
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)
    assert [(s.start, s.end, s.offset_seconds) for s in offset_segments(start, end, tz)] == [
        (start, end, 8 * 3600)]


def test_a_change_at_the_window_end_does_not_make_an_empty_segment():
    tz = resolve_timezone("Europe/Berlin")
    end = datetime(2024, 3, 31, 1, tzinfo=UTC)  # the change itself
    segs = offset_segments(datetime(2024, 3, 30, tzinfo=UTC), end, tz)
    assert [(s.end, s.offset_seconds) for s in segs] == [(end, 3600)]


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "utc+7"])
def test_unknown_time_zone_is_a_clear_error(name):
    with pytest.raises(ShopfloorError, match="unknown time zone"):
        resolve_timezone(name)
