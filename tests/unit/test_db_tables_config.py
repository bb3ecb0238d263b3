"""Table names and the raw table's ingested_at as settings, read at call time."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import Index, UniqueConstraint
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from shopfloor.aggregation.hours import offset_segments
from shopfloor.aggregation.statements import late_pairs_select, late_range_select
from shopfloor.db.schema import configured_tables, constraint_name, get_tables
from shopfloor.errors import ShopfloorError
from shopfloor.settings import aggregation_work_mem, raw_has_ingested_at, table_names

SEED = {"temperature_hourly": "temperature"}


def _constraint_names(tables) -> set[str]:
    names = set()
    for table in tables.metadata.sorted_tables:
        names |= {i.name for i in table.indexes}
        names |= {c.name for c in table.constraints
                  if isinstance(c, UniqueConstraint) and c.name}
    return names


def test_a_renamed_table_keeps_its_columns_and_lives_in_the_schema():
    t = get_tables("flet_montrg", SEED)
    assert t.temperature_hourly.fullname == "flet_montrg.temperature"
    assert [c.name for c in t.temperature_hourly.columns] == [
        c.name for c in get_tables(None).temperature_hourly.columns]
    assert t.temperature_raw.fullname == "flet_montrg.temperature_raw"  # not renamed


def test_index_and_constraint_names_follow_the_table_names():
    default = get_tables(None)
    other = get_tables(None, {"temperature_raw": "raw_b", "s3_object": "registry_b",
                              "quarantine": "quarantine_b"})
    assert "ix_temperature_raw_capture_dt" in _constraint_names(default)
    assert {"ix_raw_b_capture_dt", "uq_registry_b_key_hash", "ix_registry_b_claim",
            "ix_quarantine_b_source"} <= _constraint_names(other)
    # two configurations in one schema never create an index or constraint of one name
    assert not _constraint_names(default) & {n for n in _constraint_names(other)
                                             if "raw_b" in n or "registry_b" in n}
    ddl = str(CreateTable(other.s3_object).compile(dialect=mssql.dialect()))
    assert "CONSTRAINT uq_registry_b_key_hash UNIQUE (key_hash)" in ddl


def test_a_long_table_name_gives_short_distinct_index_names():
    a = constraint_name("ix", "t" * 60, "capture_dt")
    b = constraint_name("ix", "t" * 59 + "u", "capture_dt")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    index = next(iter(get_tables(None, {"temperature_raw": "r" * 63}).temperature_raw.indexes))
    assert isinstance(index, Index) and len(index.name) <= 63
    assert str(CreateIndex(index).compile(dialect=postgresql.dialect())).startswith(
        f"CREATE INDEX {index.name} ON {'r' * 63}")


@pytest.mark.parametrize(("names", "message"), [
    ({"temperature_hourly": "temp; drop table x"}, "invalid table name"),
    ({"hourly": "temperature"}, "unknown table 'hourly'"),
    ({"location": "temperature_raw"}, "two tables configured with one name"),
])
def test_bad_table_names_are_refused(names, message):
    with pytest.raises(ShopfloorError, match=message):
        get_tables(None, names)


def test_settings_are_read_from_the_environment_at_call_time(monkeypatch):
    monkeypatch.setenv("SHOPFLOOR_DB_SCHEMA", "flet_montrg")
    monkeypatch.setenv("SHOPFLOOR_TABLE_TEMPERATURE_HOURLY", "temperature")
    monkeypatch.setenv("SHOPFLOOR_RAW_INGESTED_AT", "false")
    assert table_names() == SEED and raw_has_ingested_at() is False
    t = configured_tables()
    assert t.temperature_hourly.fullname == "flet_montrg.temperature"
    assert not t.raw_has_ingested_at
    assert configured_tables() is t  # one MetaData per configuration
    monkeypatch.delenv("SHOPFLOOR_TABLE_TEMPERATURE_HOURLY")
    monkeypatch.delenv("SHOPFLOOR_RAW_INGESTED_AT")
    t = configured_tables()
    assert t.temperature_hourly.name == "temperature_hourly" and t.raw_has_ingested_at


def test_bad_settings_are_one_clear_error(monkeypatch):
    monkeypatch.setenv("SHOPFLOOR_TABLE_LOCATION", "loc-ation")
    with pytest.raises(ShopfloorError, match="SHOPFLOOR_TABLE_LOCATION"):
        configured_tables()
    monkeypatch.delenv("SHOPFLOOR_TABLE_LOCATION")
    monkeypatch.setenv("SHOPFLOOR_RAW_INGESTED_AT", "nope")
    with pytest.raises(ShopfloorError, match="SHOPFLOOR_RAW_INGESTED_AT"):
        configured_tables()


def test_a_raw_table_without_ingested_at_has_neither_the_column_nor_its_index():
    raw = get_tables(None, raw_ingested_at=False).temperature_raw
    assert "ingested_at" not in raw.c
    assert [i.name for i in raw.indexes] == ["ix_temperature_raw_capture_dt"]


def test_late_data_by_reading_time_compiles_for_sql_server():
    t = get_tables("flet_montrg", SEED, raw_ingested_at=False)
    since, upto = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    sql = str(late_range_select(t, since, "capture_dt", upto).compile(dialect=mssql.dialect()))
    assert "max(flet_montrg.temperature_raw.capture_dt)" in sql
    assert "WHERE flet_montrg.temperature_raw.capture_dt > :capture_dt_1 AND " \
           "flet_montrg.temperature_raw.capture_dt <= :capture_dt_2" in sql
    assert "ingested_at" not in sql
    segs = offset_segments(since, upto, UTC)
    sql = str(late_pairs_select(t, segs, since, upto, since, upto, "capture_dt").compile(
        dialect=mssql.dialect()))
    assert "DATEDIFF_BIG" in sql and "ingested_at" not in sql



@pytest.mark.parametrize(("value", "expected"), [
    (None, "256MB"), ("", "256MB"), ("64MB", "64MB"), ("1GB", "1GB"), ("512kB", "512kB"),
    ("default", None), ("DEFAULT", None)])
def test_the_aggregation_work_mem_setting(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("SHOPFLOOR_AGG_WORK_MEM", raising=False)
    else:
        monkeypatch.setenv("SHOPFLOOR_AGG_WORK_MEM", value)
    assert aggregation_work_mem() == expected


@pytest.mark.parametrize("value", ["256", "256mb", "1TB", "0MB", "64MB; DROP TABLE x", "-1MB"])
def test_a_bad_aggregation_work_mem_is_refused(monkeypatch, value):
    monkeypatch.setenv("SHOPFLOOR_AGG_WORK_MEM", value)
    with pytest.raises(ShopfloorError, match="SHOPFLOOR_AGG_WORK_MEM"):
        aggregation_work_mem()
