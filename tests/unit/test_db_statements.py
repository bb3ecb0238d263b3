"""Compiled SQL for every dialect: SQL Server cannot run here, so its SQL is asserted on."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite
from sqlalchemy.dialects.mssql.pymssql import MSDialect_pymssql
from sqlalchemy.schema import CreateTable

from shopfloor.db.schema import get_tables, historian_data_table
from shopfloor.db.types import UtcDateTime
from shopfloor.db.upsert import build_mssql_merge
from shopfloor.errors import ShopfloorError


def test_tables_live_in_the_given_schema():
    t = get_tables("flet_montrg")
    assert t.temperature_raw.schema == "flet_montrg"
    assert t.temperature_hourly.fullname == "flet_montrg.temperature_hourly"
    assert get_tables(None).temperature_raw.schema is None


def test_unsafe_schema_is_rejected():
    with pytest.raises(ShopfloorError):
        get_tables("x; drop")


@pytest.mark.parametrize("dialect", [mssql.dialect(), postgresql.dialect(), mysql.dialect(),
                                     sqlite.dialect()])
def test_ddl_compiles_for_every_dialect(dialect):
    tables = get_tables("flet_montrg")
    for table in tables.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect))
        assert table.name in ddl


def test_sql_server_ddl_has_the_keys_of_design():
    tables = get_tables(None)
    ddl = str(CreateTable(tables.temperature_hourly).compile(dialect=mssql.dialect()))
    assert "PRIMARY KEY (loc_id, ymd, hh)" in ddl
    ddl = str(CreateTable(tables.s3_object).compile(dialect=mssql.dialect()))
    assert "CONSTRAINT uq_s3_object_key_hash UNIQUE (key_hash)" in ddl
    assert "IDENTITY" in ddl


def test_historian_table_names_are_checked():
    tables = get_tables(None)
    assert historian_data_table(tables, "sqlt_data_1_2026_01").name == "sqlt_data_1_2026_01"
    with pytest.raises(ShopfloorError):
        historian_data_table(tables, "sqlt_data_1_2026_01; drop table x")


def test_mssql_merge_binds_every_value_and_quotes_identifiers():
    table = get_tables("flet_montrg").temperature_hourly
    cols = ["loc_id", "ymd", "hh", "temperature_max", "sample_count"]
    stmt = build_mssql_merge(table, cols, ["loc_id", "ymd", "hh"],
                             ["temperature_max", "sample_count"], 2, MSDialect_pymssql())
    sql = str(stmt.compile(dialect=MSDialect_pymssql()))
    assert sql.startswith("MERGE INTO flet_montrg.temperature_hourly WITH (HOLDLOCK) AS t")
    assert "USING (VALUES (:p0_0, :p0_1, :p0_2, :p0_3, :p0_4), " \
           "(:p1_0, :p1_1, :p1_2, :p1_3, :p1_4)) AS s " \
           "(loc_id, ymd, hh, temperature_max, sample_count)" in sql
    assert "ON t.loc_id = s.loc_id AND t.ymd = s.ymd AND t.hh = s.hh" in sql
    assert "WHEN MATCHED THEN UPDATE SET t.temperature_max = s.temperature_max, " \
           "t.sample_count = s.sample_count" in sql
    assert "WHEN NOT MATCHED THEN INSERT (loc_id, ymd, hh, temperature_max, sample_count) " \
           "VALUES (s.loc_id, s.ymd, s.hh, s.temperature_max, s.sample_count);" in sql


def test_mssql_merge_without_updates_only_inserts():
    table = get_tables(None).pipeline_watermark
    stmt = build_mssql_merge(table, ["name", "value", "updated_at"], ["name"], [], 1,
                             mssql.dialect())
    sql = str(stmt.compile(dialect=mssql.dialect()))
    assert "WHEN MATCHED" not in sql
    assert "WHEN NOT MATCHED THEN INSERT" in sql


def test_utc_datetime_stores_naive_utc_and_returns_aware_utc():
    t = UtcDateTime()
    local = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    stored = t.process_bind_param(local, None)
    assert stored == datetime(2026, 3, 29, 1, 30) and stored.tzinfo is None
    assert t.process_result_value(stored, None) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert t.process_result_value("2026-03-29 01:30:00", None).tzinfo is UTC
