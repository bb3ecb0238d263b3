"""Claim statements per dialect, compiled: the locking clauses each database needs."""

from datetime import UTC, datetime

from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from shopfloor.compaction.claims import build_claim_select, build_mssql_claim
from shopfloor.db.schema import get_tables

CUTOFF = datetime(2025, 11, 20, tzinfo=UTC)


def _sql(dialect, schema=None) -> str:
    stmt = build_claim_select(get_tables(schema), "BRCB", 10, "run-1", CUTOFF, dialect.name)
    return str(stmt.compile(dialect=dialect))


def test_postgresql_claim_skips_locked_rows():
    sql = _sql(postgresql.dialect())
    assert "FOR UPDATE SKIP LOCKED" in sql
    assert "LIMIT %(param_1)s" in sql


def test_mysql_claim_skips_locked_rows():
    assert "FOR UPDATE SKIP LOCKED" in _sql(mysql.dialect())


def test_sqlite_claim_has_no_row_locks_it_relies_on_begin_immediate():
    assert "FOR UPDATE" not in _sql(sqlite.dialect())


def test_claim_values_are_bound_parameters_not_literals():
    sql = _sql(postgresql.dialect())
    assert "BRCB" not in sql and "run-1" not in sql


def test_mssql_claim_reads_past_locked_rows_and_outputs_the_previous_claim():
    dialect = mssql.dialect()
    sql = str(build_mssql_claim(get_tables("flet_montrg"), dialect).compile(dialect=dialect))
    assert "FROM flet_montrg.s3_object WITH (UPDLOCK, READPAST, ROWLOCK)" in sql
    assert "SELECT TOP (:limit)" in sql
    assert "OUTPUT inserted.id, inserted.[key], inserted.size, deleted.compression_run_id" in sql
    assert "compression_run_id = :run_id" in sql
    assert "claimed_at < :cutoff" in sql
