"""Pure shaping for the dashboard page, and the bucket SQL on every dialect."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from shopfloor.dashboard.buckets import EPOCH, bucket_start, time_bucket
from shopfloor.dashboard.queries import daily, reasons_line
from shopfloor.dashboard.views import (
    age_bucket,
    age_text,
    device_status,
    headline,
    hour_of,
    local_day_start,
    local_days,
)
from shopfloor.db.schema import get_tables

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "bucket"), [
    (0, "< 5 min"), (299, "< 5 min"), (300, "5-15 min"), (899, "5-15 min"),
    (900, "15-60 min"), (3599, "15-60 min"), (3600, "1-24 h"), (86399, "1-24 h"),
    (86400, "> 24 h"), (None, "never"), (float("nan"), "never")])
def test_age_buckets_have_exclusive_upper_bounds(seconds, bucket):
    assert age_bucket(seconds) == bucket


def test_age_text_picks_a_readable_unit():
    assert [age_text(s) for s in (42, 420, 12600, 3 * 86400, None)] == [
        "42 s", "7 min", "3.5 h", "3 d", "never"]


def test_device_status_and_headline_count_online_devices():
    devices = pd.DataFrame({
        "loc_id": ["L1", "L2", "L3"], "device": ["a", "b", None],
        "last_reading": pd.to_datetime([NOW - timedelta(minutes=2),
                                        NOW - timedelta(minutes=40), None], utc=True),
        "readings": [5, 1, 0]})
    status = device_status(devices, NOW, timedelta(minutes=15))
    assert list(status["online"]) == [True, False, False]
    assert list(status["age_bucket"]) == ["< 5 min", "15-60 min", "never"]
    head = headline(status)
    assert (head.online, head.known, head.newest_age_bucket) == (1, 3, "< 5 min")
    assert headline(status.iloc[0:0]).newest_age_bucket == "never"


def test_local_days_and_their_utc_start_follow_the_plant_zone():
    tz = ZoneInfo("Asia/Makassar")  # UTC+8: 12:00 UTC on Dec 1 is 20:00 local, Dec 1
    assert local_days(NOW, tz, 3) == ("20261129", "20261201")
    assert local_days(datetime(2026, 11, 30, 17, tzinfo=UTC), tz, 1) == ("20261201",) * 2
    assert local_day_start("20261201", tz) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert list(hour_of(pd.Series(["20261201"]), pd.Series(["07"]))) == [
        pd.Timestamp(2026, 12, 1, 7)]


def test_reasons_line_reads_the_quarantine_reason_json():
    reasons = ('[{"column": "temperature", "check": "not_nullable", "value": null},'
               ' {"column": null, "check": "column_in_schema", "value": "x"}]')
    assert reasons_line(reasons) == "temperature: not_nullable; column_in_schema (x)"
    assert reasons_line("{oops") == "{oops"
    assert reasons_line(None) == ""


def test_bucket_index_round_trips_to_its_start():
    index = int((datetime(2026, 12, 1, 10, 7, 59, 999999, tzinfo=UTC) - EPOCH)
                .total_seconds()) // 300  # what the database computes
    assert bucket_start(index, 300) == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        time_bucket(get_tables().temperature_raw.c.capture_dt, 0)


def test_the_bucket_width_is_part_of_the_statement_cache_key():
    ts = get_tables().tag_samples.c.ts
    keys = {w: select(time_bucket(ts, w))._generate_cache_key() for w in (300, 10800)}
    assert keys[300] != keys[10800]
    assert select(time_bucket(ts, 300))._generate_cache_key() == keys[300]


@pytest.mark.parametrize(("dialect", "expected"), [
    (postgresql.dialect(), "CAST(floor(EXTRACT(EPOCH FROM temperature_raw.capture_dt) / 300)"
                           " AS BIGINT)"),
    (sqlite.dialect(), "(CAST(strftime('%s', temperature_raw.capture_dt) AS INTEGER) / 300)"),
    (mysql.dialect(), "(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', "
                      "temperature_raw.capture_dt) DIV 300)"),
    (mssql.dialect(), "(DATEDIFF_BIG(second, '19700101', temperature_raw.capture_dt) / 300)"),
])
def test_five_minute_bucket_is_one_group_by_with_the_same_text_on_each_dialect(dialect,
                                                                              expected):
    raw = get_tables().temperature_raw
    bucket = time_bucket(raw.c.capture_dt, 300)
    sql = str(select(raw.c.loc_id, bucket).group_by(raw.c.loc_id, bucket).compile(
        dialect=dialect))
    select_part, group_part = sql.split("GROUP BY")
    assert expected in select_part and expected in group_part


def test_daily_rollup_compiles_for_sql_server_with_a_guarded_division():
    captured = []

    class Conn:  # records the statement instead of running it
        def execute(self, stmt):
            captured.append(stmt)
            return type("R", (), {"all": lambda self: []})()

    daily(Conn(), get_tables(), ["L1"], "20261101", "20261130")
    sql = str(captured[0].compile(dialect=mssql.dialect()))
    assert ("sum(temperature_hourly.temperature_avg * temperature_hourly.sample_count) / "
            "(nullif(sum(CASE WHEN (temperature_hourly.temperature_avg IS NOT NULL) THEN "
            "temperature_hourly.sample_count END)") in sql
    assert "GROUP BY temperature_hourly.loc_id, temperature_hourly.ymd" in sql


def test_forward_backlog_status_tells_the_oldest_samples_and_the_reports_age():
    from shopfloor.dashboard.views import forward_backlog_status

    backlog = pd.DataFrame({
        "collector": ["c1", "c1"], "sink": ["landing:raw", "warehouse:db"],
        "backlog_samples": [30, 0],
        "oldest_sample_at": pd.to_datetime([NOW - timedelta(hours=2), None], utc=True),
        "dropped_samples": [0, 0], "buffer_fill_pct": [1.5, 1.5],
        "reported_at": pd.to_datetime([NOW - timedelta(seconds=5),
                                       NOW + timedelta(seconds=2)], utc=True)})
    status = forward_backlog_status(backlog, NOW)
    assert list(status["oldest_age"]) == ["2.0 h", "-"]
    assert list(status["reported"]) == ["5 s ago", "0 s ago"]  # a collector's clock ahead



def test_trend_width_keeps_a_range_to_a_few_hundred_round_buckets():
    from shopfloor.dashboard.views import trend_width, width_text

    day = 86400
    widths = {span: trend_width(span) for span in (3600, 6 * 3600, day, 7 * day, 30 * day,
                                                   400 * day)}
    assert widths == {3600: 30, 6 * 3600: 120, day: 300, 7 * day: 3600, 30 * day: 10800,
                      400 * day: 86400}
    assert 30 * day // widths[30 * day] == 240  # 30 days of 1 s data: 240 rows per tag
    assert trend_width(0) == 1 and trend_width(300) == 1
    assert [width_text(w) for w in (5, 120, 10800, 86400, 90)] == [
        "5 s", "2 min", "3 h", "1 d", "90 s"]


def test_tag_labels_and_quality_classes_follow_opc_ranges():
    from shopfloor.dashboard.views import quality_class, tag_label

    assert tag_label("line_pressure", "plc-1", "bar") == "line_pressure (plc-1, bar)"
    assert tag_label("recipe", "plc-1", None) == "recipe (plc-1)"
    assert [quality_class(c) for c in (192, 216, 191, 64, 63, 0, None, float("nan"))] == [
        "good", "good", "uncertain", "uncertain", "bad", "bad", "-", "-"]


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect(), mysql.dialect(),
                                     mssql.dialect()])
def test_tag_queries_compile_on_every_dialect_with_bound_values(dialect):
    from shopfloor.dashboard import queries as q

    captured = []

    class Conn:  # records the statements instead of running them
        def execute(self, stmt):
            captured.append(stmt)
            return type("R", (), {"all": lambda self: []})()

    tables = get_tables()
    q.tag_trend(Conn(), tables, [7], NOW - timedelta(days=30), NOW, 10800)
    q.tag_marks(Conn(), tables, [7], NOW - timedelta(days=30), NOW, 10800)
    q.tag_changes(Conn(), tables, [7], NOW - timedelta(days=1), NOW)
    trend, marks, changes = (str(s.compile(dialect=dialect)) for s in captured)
    bucket = str(time_bucket(tables.tag_samples.c.ts, 10800).compile(dialect=dialect))
    for sql in (trend, marks):
        select_part, group_part = sql.split("GROUP BY")
        assert bucket in select_part and bucket in group_part
    assert "2026" not in trend + marks + changes  # times are bound, never inlined
    assert "lag(tag_samples.text_value) OVER (PARTITION BY tag_samples.tag_id ORDER BY " \
           "tag_samples.ts)" in changes
