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
    assert "compression_run_id IN (__[POSTCOMPILE_owners])" in sql
    assert "claimed_at < :cutoff" in sql


def test_spill_folders_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from shopfloor.compaction import duck

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f"{duck.SPILL_PREFIX}crashed"
    stale.mkdir()
    (stale / "owner.pid").write_text(dead.stdout.strip())
    (stale / "spill.tmp").write_bytes(b"x" * 10)
    live = tmp_path / f"{duck.SPILL_PREFIX}running"
    live.mkdir()
    (live / "owner.pid").write_text(str(os.getppid()))  # a live process
    other = tmp_path / f"{duck.SPILL_PREFIX}not-ours"
    other.mkdir()
    with duck.spill_folder(str(tmp_path)) as folder:
        assert os.path.isdir(folder)
        assert not stale.exists() and live.exists() and other.exists()
    assert not os.path.exists(folder)
