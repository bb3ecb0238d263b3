"""The seed registry's rows mapped onto ``s3_object``, and the import's statements per
dialect (SQL Server compiled, not run)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.dialects.mssql.pymssql import MSDialect_pymssql

from shopfloor.compaction.keys import key_hash
from shopfloor.compaction.seed_import import (
    SeedColumns,
    existing_select,
    seed_select,
    seed_statuses_select,
    seed_table,
    split_table_name,
    upgrade_statement,
)
from shopfloor.compaction.seed_registry import (
    SeedRow,
    check_statuses,
    furthest_per_key,
    parse_status_map,
    registry_row,
    status_map,
)
from shopfloor.db.schema import get_tables
from shopfloor.db.upsert import build_mssql_merge
from shopfloor.errors import ShopfloorError

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = "BRCB/2026/11/20/a.json"


def row(status, run_id="run-7", key=KEY, distrik=None, retry_failed=False, default=None):
    return registry_row(SeedRow(key, status, run_id, distrik), status_map(None, retry_failed),
                        default, NOW, "dbo.s3_keys")


@pytest.mark.parametrize(("seed", "ours", "run_id"), [
    ("SUCCESS", "SUCCESS", "run-7"),
    ("success ", "SUCCESS", "run-7"),
    ("PENDING", "PENDING", None),
    (None, "PENDING", None),
    ("", "PENDING", None),
    ("CLAIMED", "PENDING", None),
    ("IN_PROGRESS", "PENDING", None),
    ("FAILED", "FAILED", "run-7"),
    ("QUARANTINED", "QUARANTINED", "run-7"),
])
def test_seed_statuses_map_onto_ours_with_the_run_id_only_when_finished(seed, ours, run_id):
    r = row(seed)
    assert (r["compression_status"], r["compression_run_id"]) == (ours, run_id)


def test_a_success_row_is_complete_and_never_claimable():
    assert row("SUCCESS") == {
        "key": KEY, "key_hash": key_hash(KEY), "distrik": "BRCB", "size": None,
        "discovered_at": NOW, "compression_run_id": "run-7", "claimed_at": None,
        "compression_status": "SUCCESS", "attempts": 0, "error": None, "completed_at": None,
    }


def test_failed_says_where_it_came_from_and_can_be_retried():
    assert row("FAILED")["error"] == "imported from dbo.s3_keys: seed status FAILED"
    retried = row("FAILED", retry_failed=True)
    assert (retried["compression_status"], retried["compression_run_id"],
            retried["error"]) == ("PENDING", None, None)


def test_district_from_column_then_key_layout_then_default():
    assert row("SUCCESS", distrik="KDL")["distrik"] == "KDL"
    assert row("SUCCESS", key="x/dstrct_code=TMB/1.json")["distrik"] == "TMB"
    assert row("SUCCESS", key="line1-plc/a.json") == "no_district"
    assert row("SUCCESS", key="line1-plc/a.json", default="BRCB")["distrik"] == "BRCB"


def test_keys_that_are_not_json_are_skipped():
    assert row("PENDING", key="BRCB/a.parquet") == "not_json"


def test_a_run_id_longer_than_the_column_is_refused():
    with pytest.raises(ShopfloorError, match="longer than 64"):
        row("SUCCESS", run_id="r" * 65)


def test_unknown_statuses_are_refused_with_all_of_them_named():
    with pytest.raises(ShopfloorError, match="statuses shopfloor does not know: DONE, WEIRD"):
        check_statuses(["SUCCESS", "done", "WEIRD", None], status_map())
    check_statuses(["done"], status_map(parse_status_map(["DONE=success"])))


@pytest.mark.parametrize("item", ["DONE", "DONE=", "DONE=FINISHED"])
def test_a_bad_status_map_entry_is_one_clear_error(item):
    with pytest.raises(ShopfloorError, match="status map|--status-map"):
        status_map(parse_status_map([item]))


def test_duplicates_keep_the_furthest_along_status():
    rows = [row("PENDING"), row("SUCCESS"), row("FAILED")]
    assert [r["compression_status"] for r in furthest_per_key(rows)] == ["SUCCESS"]


@pytest.mark.parametrize(("name", "parts"), [
    ("dbo.s3_keys", ("dbo", "s3_keys")), ("s3_keys", (None, "s3_keys"))])
def test_source_table_names_split_into_checked_parts(name, parts):
    assert split_table_name(name) == parts


@pytest.mark.parametrize("name", ["dbo.s3;keys", "a.b.c", "x.", "1abc"])
def test_bad_source_table_names_are_refused(name):
    with pytest.raises(ShopfloorError, match="invalid"):
        split_table_name(name)


COLS = SeedColumns("key", "compression_status", "compression_run_id")


def mssql_sql(stmt) -> str:
    return str(stmt.compile(dialect=mssql.dialect()))


def test_mssql_reads_the_seed_table_with_quoted_columns():
    seed = seed_table("dbo", "s3_keys", COLS)
    assert mssql_sql(seed_select(seed, COLS)) == (
        "SELECT dbo.s3_keys.[key], dbo.s3_keys.compression_status, "
        "dbo.s3_keys.compression_run_id \nFROM dbo.s3_keys")
    assert mssql_sql(seed_statuses_select(seed, COLS)) == (
        "SELECT DISTINCT dbo.s3_keys.compression_status \nFROM dbo.s3_keys")


def test_mssql_looks_up_existing_keys_by_bound_hashes():
    sql = mssql_sql(existing_select(get_tables("flet_montrg"), ["h1", "h2"]))
    assert sql == (
        "SELECT flet_montrg.s3_object.key_hash, flet_montrg.s3_object.compression_status "
        "\nFROM flet_montrg.s3_object \nWHERE flet_montrg.s3_object.key_hash "
        "IN (__[POSTCOMPILE_key_hash_1])")


def test_mssql_upgrade_touches_only_pending_rows():
    sql = mssql_sql(upgrade_statement(get_tables("flet_montrg")))
    assert sql == (
        "UPDATE flet_montrg.s3_object SET compression_run_id=:b_run_id, "
        "compression_status=:b_status, error=:b_error "
        "WHERE flet_montrg.s3_object.key_hash = :b_key_hash "
        "AND flet_montrg.s3_object.compression_status = :compression_status_1")


def test_mssql_insert_of_new_keys_is_a_merge_that_never_updates():
    table = get_tables("flet_montrg").s3_object
    cols = list(row("SUCCESS").keys())
    sql = str(build_mssql_merge(table, cols, ["key_hash"], [], 2, MSDialect_pymssql())
              .compile(dialect=MSDialect_pymssql()))
    assert sql.startswith("MERGE INTO flet_montrg.s3_object WITH (HOLDLOCK) AS t\n")
    assert "ON t.key_hash = s.key_hash\nWHEN NOT MATCHED THEN INSERT ([key], key_hash," in sql
    assert "WHEN MATCHED" not in sql and "BRCB" not in sql


def test_postgresql_statements_bind_every_value():
    sql = str(upgrade_statement(get_tables()).compile(dialect=postgresql.dialect()))
    assert "SUCCESS" not in sql and "%(b_key_hash)s" in sql
