"""The pure parts of the tag rollups: periods, the pair rows, the statements per dialect."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import column, select
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from shopfloor.aggregation.tag_rollup import (
    RollupStats,
    daily_select,
    first_last_update,
    groups_table,
    hourly_groups,
    new_pairs_select,
    period_rows,
    period_table,
)
from shopfloor.db.schema import get_tables
from shopfloor.tags.periods import DAY, HOUR, day_floor, floor_period, hour_floor

DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect(),
            "mysql": mysql.dialect(), "mssql": mssql.dialect()}
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def test_floor_period() -> None:
    ts = datetime(2024, 3, 10, 23, 59, 59, 999999, tzinfo=UTC)
    assert floor_period(ts, HOUR) == datetime(2024, 3, 10, 23, tzinfo=UTC)
    assert floor_period(ts, DAY) == datetime(2024, 3, 10, tzinfo=UTC)


def test_period_rows_are_distinct_sorted_naive_utc_with_their_end() -> None:
    plus2 = timezone(timedelta(hours=2))
    pairs = [(5, datetime(2024, 3, 10, 23, 30, tzinfo=UTC)),
             (5, datetime(2024, 3, 11, 1, 10, tzinfo=plus2)),  # 23:10 UTC: the same hour
             (1, datetime(2024, 3, 11, 0, 0, tzinfo=UTC))]
    assert period_rows(pairs, HOUR) == [
        (1, datetime(2024, 3, 11, 0), datetime(2024, 3, 11, 1)),
        (5, datetime(2024, 3, 10, 23), datetime(2024, 3, 11, 0))]
    assert period_rows(pairs, DAY) == [
        (1, datetime(2024, 3, 11), datetime(2024, 3, 12)),
        (5, datetime(2024, 3, 10), datetime(2024, 3, 11))]


@pytest.mark.parametrize(("dialect", "hour", "day"), [
    ("postgresql", "date_trunc('hour', ts)", "date_trunc('day', ts)"),
    ("sqlite", "strftime('%Y-%m-%d %H:00:00.000000', ts)",
     "strftime('%Y-%m-%d 00:00:00.000000', ts)"),
    ("mysql", "TIMESTAMP(DATE(ts), MAKETIME(HOUR(ts), 0, 0))", "TIMESTAMP(DATE(ts))"),
    ("mssql", "DATEADD(hour, DATEDIFF(hour, 0, ts)", "DATEADD(day, DATEDIFF(day, 0, ts)"),
])
def test_period_floor_per_dialect(dialect: str, hour: str, day: str) -> None:
    sql = str(select(hour_floor(column("ts")), day_floor(column("ts")))
              .compile(dialect=DIALECTS[dialect]))
    assert hour in sql and day in sql


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mysql"])
def test_one_group_by_then_first_and_last_by_primary_key(dialect: str) -> None:
    t, late, d = get_tables(), period_table(), DIALECTS[dialect]
    sql = str(hourly_groups(t.tag_samples).compile(dialect=d))
    assert sql.count("GROUP BY") == 1 and "JOIN" not in sql and "quality =" in sql
    sql = str(hourly_groups(t.tag_samples, late).compile(dialect=d))
    assert "tag_samples.ts < tmp_tagroll_" in sql and "GROUP BY tag_samples.tag_id, tmp" in sql
    sql = str(first_last_update(groups_table(), t.tag_samples).compile(dialect=d))
    assert "f.ts = tmp_taghours_" in sql and "l.ts = tmp_taghours_" in sql
    sql = str(daily_select(t.tag_hourly, NOW, late).compile(dialect=d))
    assert sql.count("GROUP BY") == 1 and "fh.period_start" in sql
    sql = str(new_pairs_select(t.tag_samples, NOW).compile(dialect=d))
    assert "ingested_at >" in sql


def test_summary_keys() -> None:
    assert RollupStats("late", 10, 2, 1, 1, 1).summary() == {
        "tag_rollup": "late", "tag_samples": 10, "tag_hours": 2, "tag_hours_written": 1,
        "tag_days": 1, "tag_days_written": 1}
