"""The comparison behind `shopfloor db check` and the DDL of `db init --upgrade` (pure)."""

import pytest
from sqlalchemy import Float, Text
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from shopfloor.db.check import (
    ActualColumn,
    ActualTable,
    add_column_ddl,
    compare,
    compare_table,
    format_report,
    type_family,
)
from shopfloor.db.schema import get_tables
from shopfloor.db.types import UtcDateTime
from shopfloor.errors import ShopfloorError

SEED = get_tables("flet_montrg", {"temperature_hourly": "temperature"}, raw_ingested_at=False)


@pytest.mark.parametrize(("type_", "family"), [
    (postgresql.TIMESTAMP(), "datetime"), (mssql.DATETIME2(), "datetime"),
    (UtcDateTime(), "datetime"), (mssql.BIT(), "boolean"), (mysql.TINYINT(), "integer"),
    (postgresql.DOUBLE_PRECISION(), "number"), (postgresql.NUMERIC(10, 2), "number"),
    (Float(53), "number"), (Text(), "string"), (mssql.NVARCHAR(20), "string"),
    (postgresql.JSONB(), "other"),
])
def test_type_families_of_reflected_types(type_, family):
    assert type_family(type_) == family


def actual_of(table, drop=(), keys=None, **changed: ActualColumn) -> ActualTable:
    """What a database would reflect for ``table``, minus ``drop``, with changes."""
    cols = {c.name: ActualColumn(c.name, type_family(c.type), c.nullable,
                                 length=getattr(c.type, "length", None), type_name=str(c.type))
            for c in table.columns if c.name not in drop}
    cols.update(changed)
    if keys is None:
        keys = [[c.name for c in table.primary_key.columns]]
    return ActualTable(table.name, cols, frozenset(frozenset(k) for k in keys))


def test_a_table_as_the_flows_need_it_is_ok():
    report = compare_table("temperature_hourly", SEED.temperature_hourly,
                           actual_of(SEED.temperature_hourly))
    assert report.ok and report.status == "ok" and report.found == report.needed == 20


def test_missing_columns_are_errors_and_only_non_key_ones_are_addable():
    hourly = SEED.temperature_hourly
    report = compare_table("temperature_hourly", hourly,
                           actual_of(hourly, drop=("sample_count", "updated_at", "hh"),
                                     keys=[]))
    assert not report.ok and report.status == "INCOMPLETE"
    assert report.addable == ["sample_count", "updated_at"]  # hh is part of the key
    kinds = [(f.kind, f.column) for f in report.findings]
    assert ("missing column", "hh") in kinds and ("key", None) in kinds
    assert any("part of a key: add it by hand" in f.message for f in report.findings)


def test_a_missing_table_is_an_error():
    (report,) = compare(SEED, {}, only=["location"])
    assert (report.present, report.ok, report.status) == (False, False, "MISSING")
    assert report.name == "flet_montrg.location"


def test_the_upsert_key_may_be_a_unique_index_instead_of_the_primary_key():
    hourly = SEED.temperature_hourly
    actual = actual_of(hourly, keys=[["id"], ["hh", "ymd", "loc_id"]])
    assert compare_table("temperature_hourly", hourly, actual).ok
    actual = actual_of(hourly, keys=[["loc_id", "ymd"]])
    report = compare_table("temperature_hourly", hourly, actual)
    assert [f.message for f in report.findings] == [
        "no primary key or unique key on (loc_id, ymd, hh): the flows' upserts need one"]


def test_type_length_and_null_differences_are_warnings():
    raw = SEED.temperature_raw
    report = compare_table("temperature_raw", raw, actual_of(
        raw,
        loc_id=ActualColumn("loc_id", "string", False, length=10, type_name="VARCHAR(10)"),
        temperature=ActualColumn("temperature", "string", True, type_name="TEXT"),
        humidity=ActualColumn("humidity", "number", False, type_name="REAL")))
    assert report.ok and report.status == "differs"
    assert sorted((f.level, f.kind, f.column) for f in report.findings) == [
        ("warning", "length", "loc_id"), ("warning", "nullable", "humidity"),
        ("warning", "type", "temperature")]


def test_a_boolean_stored_as_tinyint_is_no_difference():
    loc = SEED.location
    report = compare_table("location", loc, actual_of(
        loc, active=ActualColumn("active", "integer", False, type_name="TINYINT")))
    assert report.findings == []


def test_the_ingested_at_setting_decides_whether_the_column_is_needed():
    with_col = get_tables("flet_montrg", raw_ingested_at=True)
    seed_raw = actual_of(SEED.temperature_raw)  # the seed shape: no ingested_at
    assert compare_table("temperature_raw", SEED.temperature_raw, seed_raw).ok
    report = compare_table("temperature_raw", with_col.temperature_raw, seed_raw)
    assert report.addable == ["ingested_at"]


def test_unknown_table_keys_are_refused():
    with pytest.raises(ShopfloorError, match="unknown table 'hourly'"):
        compare(SEED, {}, only=["hourly"])


def test_the_report_is_a_readable_table():
    hourly = SEED.temperature_hourly
    reports = compare(SEED, {"temperature": actual_of(hourly, drop=("sample_count",)),
                             "temperature_raw": actual_of(SEED.temperature_raw)},
                      only=["temperature_raw", "temperature_hourly"])
    lines = format_report(reports)
    assert lines[0].split() == ["table", "in", "the", "database", "status", "columns"]
    assert lines[1].split() == ["temperature_raw", "flet_montrg.temperature_raw", "ok", "6/6"]
    assert lines[2].split() == ["temperature_hourly", "flet_montrg.temperature", "INCOMPLETE",
                                "19/20"]
    assert lines[3] == ("    error: column sample_count (integer) is missing: "
                        "`shopfloor db init --upgrade` adds it")
    assert lines[-1] == "1 of 2 tables usable; fix: temperature_hourly"


@pytest.mark.parametrize(("dialect", "expected"), [
    (mssql.dialect(), "ALTER TABLE flet_montrg.temperature ADD sample_count INTEGER NULL"),
    (postgresql.dialect(), "ALTER TABLE flet_montrg.temperature ADD sample_count INTEGER"),
    (sqlite.dialect(), "ALTER TABLE flet_montrg.temperature ADD sample_count INTEGER"),
])
def test_added_columns_are_nullable(dialect, expected):
    hourly = SEED.temperature_hourly
    assert add_column_ddl(hourly, hourly.c.sample_count, dialect) == expected


def test_sql_server_form_of_every_added_column_compiles():
    d = mssql.dialect()
    t = SEED
    assert add_column_ddl(t.temperature_hourly, t.temperature_hourly.c.updated_at, d) == (
        "ALTER TABLE flet_montrg.temperature ADD updated_at DATETIME2(6) NULL")
    assert add_column_ddl(t.s3_object, t.s3_object.c.attempts, d) == (
        "ALTER TABLE flet_montrg.s3_object ADD attempts INTEGER NOT NULL DEFAULT 0")
    assert add_column_ddl(t.s3_object, t.s3_object.c.compression_status, d) == (
        "ALTER TABLE flet_montrg.s3_object ADD compression_status VARCHAR(16) NOT NULL "
        "DEFAULT 'PENDING'")
    assert add_column_ddl(t.location, t.location.c.active, d) == (
        "ALTER TABLE flet_montrg.location ADD active BIT NOT NULL DEFAULT 1")
    assert add_column_ddl(t.temperature_raw, t.temperature_raw.c.device, d) == (
        "ALTER TABLE flet_montrg.temperature_raw ADD device VARCHAR(128) NULL")
    # every column of every table has an SQL Server form; reserved words are quoted
    assert add_column_ddl(t.s3_object, t.s3_object.c.key, d) == (
        "ALTER TABLE flet_montrg.s3_object ADD [key] VARCHAR(1024) NULL")
    q = d.identifier_preparer
    for table in t.metadata.sorted_tables:
        for column in table.columns:
            if not column.primary_key:
                assert add_column_ddl(table, column, d).startswith(
                    f"ALTER TABLE flet_montrg.{table.name} ADD {q.quote(column.name)} ")


def test_a_server_default_is_rendered_per_dialect():
    loc = SEED.location
    assert add_column_ddl(loc, loc.c.active, postgresql.dialect()).endswith(
        "ADD active BOOLEAN DEFAULT true NOT NULL")


def test_a_view_without_keys_is_readable_and_never_altered():
    """A view over the seed's raw table (docs/migrating.md) has no key: the flows that
    read it are fine (a warning), and ``--upgrade`` adds nothing to it."""
    from dataclasses import replace

    raw = SEED.temperature_raw
    as_table = actual_of(raw, drop=("device",), keys=[])
    as_view = replace(as_table, view=True)
    table_report = compare_table("temperature_raw", raw, as_table)
    view_report = compare_table("temperature_raw", raw, as_view)
    assert not table_report.ok and table_report.addable == ["device"]
    key = [f for f in view_report.findings if f.kind == "key"]
    assert key and key[0].level == "warning" and "a view" in key[0].message
    assert view_report.addable == []  # still an error: a view is changed by its owner
    assert any("add it to the view" in f.message for f in view_report.findings)
