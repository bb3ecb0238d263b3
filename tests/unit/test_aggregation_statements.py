"""The GROUP BY compiled for every dialect: bucketing expression and bound values only."""

from datetime import UTC, datetime

import pytest
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from shopfloor.aggregation.hours import offset_segments, resolve_timezone, ymd_hh
from shopfloor.aggregation.statements import (
    HOURLY_KEY,
    VALUE_COLUMNS,
    aggregate_select,
    hourly_in_window_select,
    late_pairs_select,
)
from shopfloor.aggregation.windows import Window
from shopfloor.db.schema import configured_tables, get_tables

START, END = datetime(2024, 11, 2, tzinfo=UTC), datetime(2024, 11, 4, tzinfo=UTC)
SEGMENTS = offset_segments(START, END, resolve_timezone("America/New_York"))

EPOCH_SQL = {
    "postgresql": "date_part('epoch', flet_montrg.temperature_raw.capture_dt)",
    "sqlite": "strftime('%s', flet_montrg.temperature_raw.capture_dt)",
    "mysql": "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', flet_montrg.temperature_raw.capture_dt)",
    "mssql": "DATEDIFF_BIG(SECOND, '19700101', flet_montrg.temperature_raw.capture_dt)",
}
DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect(),
            "mysql": mysql.dialect(), "mssql": mssql.dialect()}


def compiled(stmt, name):
    return stmt.compile(dialect=DIALECTS[name])


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_group_by_buckets_with_the_dialects_epoch_and_a_case_over_offsets(name):
    tables = get_tables("flet_montrg")
    c = compiled(aggregate_select(tables, SEGMENTS, START, END, ["L1", "L2"]), name)
    sql = " ".join(str(c).split())
    assert EPOCH_SQL[name] in sql
    assert "CASE WHEN" in sql and "GROUP BY" in sql
    # Two offsets (EDT, EST), the change instant, the window bounds and the locations are
    # all bound parameters: no value is in the SQL text.
    values = list(c.params.values())
    assert -14400 in values and -18000 in values
    assert "L1" in str(values) and "-14400" not in sql and "'L1'" not in sql
    assert "2024" not in sql


def test_a_fixed_offset_window_has_no_case():
    segs = offset_segments(START, END, resolve_timezone("Asia/Kolkata"))
    c = compiled(aggregate_select(get_tables(), segs, START, END), "postgresql")
    assert "CASE" not in str(c) and 19800 in c.params.values()


def test_mssql_group_by_uses_integer_division_of_datediff_big():
    sql = str(compiled(aggregate_select(get_tables(), SEGMENTS, START, END), "mssql"))
    assert "DATEDIFF_BIG(SECOND, '19700101', temperature_raw.capture_dt)" in sql
    assert "/ 3600)" in sql and "count(*) AS sample_count" in sql


def test_late_pairs_filter_on_ingested_at_bounds():
    c = compiled(late_pairs_select(get_tables(), SEGMENTS, START, END, START, END), "postgresql")
    sql = str(c)
    assert "SELECT DISTINCT" in sql and "ingested_at >" in sql and "ingested_at <=" in sql


def test_hourly_window_compares_ymd_and_hh_as_bound_strings():
    c = compiled(hourly_in_window_select(get_tables(), Window(480000, 480024, ("A",))), "mssql")
    (y0, h0), (y1, h1) = ymd_hh(480000), ymd_hh(480024)
    values = list(c.params.values())
    assert all(v in values for v in (y0, h0, y1, h1, ["A"]))
    assert y0 not in str(c) and y1 not in str(c)


def test_labels_are_computed_from_the_hour_index_in_sql_for_the_in_database_path():
    from shopfloor.aggregation.statements import labelled_select

    stmt = labelled_select(get_tables(), SEGMENTS, START, END)
    pg = str(compiled(stmt, "postgresql"))
    lite = str(compiled(stmt, "sqlite"))
    assert "to_char(TIMESTAMP '1970-01-01' + (g.hour_index) * INTERVAL '1 hour', 'HH24')" in pg
    assert "strftime('%Y%m%d', (g.hour_index) * 3600, 'unixepoch')" in lite


def test_value_columns_are_the_hourly_tables_columns_in_order():
    names = [c.name for c in get_tables().temperature_hourly.columns]
    # the rollup columns came later: after sample_count and updated_at (db init --upgrade)
    assert [n for n in names if n not in ("sample_count", "updated_at")] == [
        *HOURLY_KEY, *VALUE_COLUMNS]
    stmt = hourly_in_window_select(get_tables(), Window(0, 1))
    selected = [c.name for c in stmt.selected_columns]
    assert selected == [*HOURLY_KEY, *VALUE_COLUMNS, "sample_count"]


def test_aggregation_tasks_use_the_schema_of_the_environment(monkeypatch):
    monkeypatch.setenv("SHOPFLOOR_DB_SCHEMA", "flet_montrg")
    assert configured_tables().temperature_hourly.fullname == "flet_montrg.temperature_hourly"
    monkeypatch.delenv("SHOPFLOOR_DB_SCHEMA")
    assert configured_tables().temperature_hourly.fullname == "temperature_hourly"
