"""Importing the seed's S3 registry (PostgreSQL standing in for its SQL Server table) into
``s3_object``: exact rows, nothing downgraded, a rerun changes nothing, compaction claims
exactly the keys the seed had not finished."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import Engine, insert, select, text

from blocks.bootstrap import connector_from_url
from shopfloor.compaction.claims import claim_keys
from shopfloor.compaction.keys import key_hash
from shopfloor.compaction.seed_import import SeedColumns, import_registry
from shopfloor.compaction.seed_registry import status_map
from shopfloor.db.schema import Tables
from shopfloor.errors import ShopfloorError

REPO = Path(__file__).resolve().parents[3]
MAIN = "import sys; from deployments.cli import main; sys.argv[0] = 'shopfloor'; main()"
NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)
EARLIER = datetime(2026, 11, 30, tzinfo=UTC)
SEED = [  # (key, compression_status, compression_run_id) as the seed's table holds them
    ("BRCB/2026/11/20/a.json", "SUCCESS", "seed-run-1"),
    ("BRCB/2026/11/20/b.json", "PENDING", None),
    ("BRCB/2026/11/20/c.json", None, None),
    ("BRCB/2026/11/20/d.json", "IN_PROGRESS", "seed-run-dead"),
    ("BRCB/2026/11/20/e.json", "FAILED", "seed-run-2"),
    ("KDL/2026/11/20/f.json.gz", "success", "seed-run-3"),
    ("BRCB/2026/11/20/g.json", "SUCCESS", "seed-run-1"),  # ours: PENDING -> upgraded
    ("BRCB/2026/11/20/h.json", "PENDING", None),  # ours: SUCCESS -> stays
    ("line1-plc/2026112000/i.json", "SUCCESS", "seed-run-1"),  # no district in the key
    ("BRCB/2026/11/20/j.csv", "SUCCESS", "seed-run-1"),  # not JSON
]


@pytest.fixture
def seed_table(pg_engine: Engine) -> str:
    """The seed's registry, shaped like its SQL Server table, in schema ``pama``."""
    with pg_engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS pama CASCADE"))
        conn.execute(text("CREATE SCHEMA pama"))
        conn.execute(text(
            "CREATE TABLE pama.s3_keys (id SERIAL PRIMARY KEY, key VARCHAR(1024) NOT NULL, "
            "compression_run_id VARCHAR(64), compression_status VARCHAR(20), "
            "created_at TIMESTAMP DEFAULT now())"))
        conn.execute(text("INSERT INTO pama.s3_keys (key, compression_status, "
                          "compression_run_id) VALUES (:k, :s, :r)"),
                     [{"k": k, "s": s, "r": r} for k, s, r in SEED])
    return "pama.s3_keys"


def _ours(key: str, status: str, run_id: str | None, when: datetime) -> dict:
    return {"key": key, "key_hash": key_hash(key), "distrik": "BRCB",
            "discovered_at": when, "compression_status": status, "attempts": 0,
            "compression_run_id": run_id, "completed_at": when if status == "SUCCESS" else None}


@pytest.fixture
def already_ours(pg_engine: Engine, registry: Tables) -> None:
    """Two keys registered by shopfloor before the import: one still PENDING, one done."""
    with pg_engine.begin() as conn:
        conn.execute(insert(registry.s3_object), [
            _ours("BRCB/2026/11/20/g.json", "PENDING", None, EARLIER),
            _ours("BRCB/2026/11/20/h.json", "SUCCESS", "our-run", EARLIER),
        ])


def rows(engine: Engine, tables: Tables) -> dict[str, tuple]:
    t = tables.s3_object
    with engine.connect() as conn:
        result = conn.execute(select(
            t.c.key, t.c.distrik, t.c.compression_status, t.c.compression_run_id,
            t.c.error, t.c.discovered_at, t.c.attempts, t.c.claimed_at))
        return {r[0]: tuple(r[1:]) for r in result}


SRC = "imported from pama.s3_keys: seed status"
EXPECTED = {
    "BRCB/2026/11/20/a.json": ("BRCB", "SUCCESS", "seed-run-1", None, NOW, 0, None),
    "BRCB/2026/11/20/b.json": ("BRCB", "PENDING", None, None, NOW, 0, None),
    "BRCB/2026/11/20/c.json": ("BRCB", "PENDING", None, None, NOW, 0, None),
    "BRCB/2026/11/20/d.json": ("BRCB", "PENDING", None, None, NOW, 0, None),
    "BRCB/2026/11/20/e.json": ("BRCB", "FAILED", "seed-run-2", f"{SRC} FAILED", NOW, 0, None),
    "KDL/2026/11/20/f.json.gz": ("KDL", "SUCCESS", "seed-run-3", None, NOW, 0, None),
    "BRCB/2026/11/20/g.json": ("BRCB", "SUCCESS", "seed-run-1", None, EARLIER, 0, None),
    "BRCB/2026/11/20/h.json": ("BRCB", "SUCCESS", "our-run", None, EARLIER, 0, None),
}


def run_import(pg_engine: Engine, tables: Tables, chunk_size: int = 3, now=NOW):
    return import_registry(pg_engine, pg_engine, tables, "pama.s3_keys",
                           SeedColumns(), status_map(), chunk_size=chunk_size, now=now)


def test_import_keeps_what_the_seed_finished_and_a_rerun_changes_nothing(
        pg_engine, registry, seed_table, already_ours):
    counts = run_import(pg_engine, registry)
    assert rows(pg_engine, registry) == EXPECTED
    assert counts.summary() == (
        "read 10, imported 6 (FAILED 1, PENDING 3, SUCCESS 2), already present 1, "
        "upgraded from PENDING 1 (SUCCESS 1), skipped 2 (no_district 1, not_json 1)")
    assert counts.skipped_keys == ["line1-plc/2026112000/i.json", "BRCB/2026/11/20/j.csv"]

    again = run_import(pg_engine, registry, chunk_size=100, now=NOW + timedelta(days=1))
    assert rows(pg_engine, registry) == EXPECTED
    assert again.summary() == (
        "read 10, imported 0, already present 8, upgraded from PENDING 0, "
        "skipped 2 (no_district 1, not_json 1)")


def test_compaction_after_the_import_claims_exactly_the_unfinished_keys(
        pg_engine, registry, seed_table, already_ours):
    run_import(pg_engine, registry)
    claimed = claim_keys(pg_engine, registry, "BRCB", 100, "ours-1", timedelta(hours=1), NOW)
    assert sorted(c.key for c in claimed) == [
        "BRCB/2026/11/20/b.json", "BRCB/2026/11/20/c.json", "BRCB/2026/11/20/d.json"]
    assert all(c.previous_run_id is None for c in claimed)
    assert claim_keys(pg_engine, registry, "KDL", 100, "ours-1", timedelta(hours=1), NOW) == []
    # A claimed key is not PENDING: importing again leaves the live claim alone.
    run_import(pg_engine, registry)
    assert rows(pg_engine, registry)["BRCB/2026/11/20/b.json"][1:3] == ("CLAIMED", "ours-1")


def test_unknown_seed_status_writes_nothing(pg_engine, registry, seed_table):
    with pg_engine.begin() as conn:
        conn.execute(text("INSERT INTO pama.s3_keys (key, compression_status) "
                          "VALUES ('BRCB/x.json', 'ARCHIVED')"))
    with pytest.raises(ShopfloorError, match="does not know: ARCHIVED"):
        run_import(pg_engine, registry)
    assert rows(pg_engine, registry) == {}


def test_missing_table_or_column_is_one_clear_error(pg_engine, registry, seed_table):
    with pytest.raises(ShopfloorError, match="seed registry table pama.nope not found"):
        import_registry(pg_engine, pg_engine, registry, "pama.nope", SeedColumns(),
                        status_map())
    with pytest.raises(ShopfloorError, match="has no status column 'state'"):
        import_registry(pg_engine, pg_engine, registry, "pama.s3_keys",
                        SeedColumns(status="state"), status_map())


def shopfloor(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
    return subprocess.run([sys.executable, "-c", MAIN, *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_import_prints_a_summary_and_is_idempotent(
        pg_url, pg_engine, registry, seed_table, prefect_harness):
    connector_from_url(pg_url).save("seed-import-meta", overwrite=True)
    args = ["compaction", "import-registry", "--source-db", "seed-import-meta",
            "--source-table", "pama.s3_keys", "--metadata-db", "seed-import-meta",
            "--default-distrik", "PLC"]
    first = shopfloor(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == (
        "read 10, imported 9 (FAILED 1, PENDING 4, SUCCESS 4), already present 0, "
        "upgraded from PENDING 0, skipped 1 (not_json 1)")
    assert rows(pg_engine, registry)["line1-plc/2026112000/i.json"][:3] == (
        "PLC", "SUCCESS", "seed-run-1")
    second = shopfloor(*args)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].startswith("read 10, imported 0, already present 9,")


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "mariadb_url"])
def test_the_same_import_on_sqlite_and_mariadb(request, url_fixture):
    """Run twice: the second import must leave the same rows."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    from shopfloor.db.engine import init_db, make_engine

    engine = make_engine(request.getfixturevalue(url_fixture))
    tables = init_db(engine)
    seed = Table("s3_keys", MetaData(), Column("id", Integer, primary_key=True),
                 Column("key", String(1024)), Column("compression_run_id", String(64)),
                 Column("compression_status", String(20)))
    with engine.begin() as conn:
        seed.drop(conn, checkfirst=True)
        seed.create(conn)
        conn.execute(insert(seed), [{"key": k, "compression_status": s,
                                     "compression_run_id": r} for k, s, r in SEED])
        conn.execute(tables.s3_object.delete())
        conn.execute(insert(tables.s3_object), [
            _ours("BRCB/2026/11/20/g.json", "PENDING", None, EARLIER),
            _ours("BRCB/2026/11/20/h.json", "SUCCESS", "our-run", EARLIER)])
    try:
        for _ in range(2):
            import_registry(engine, engine, tables, "s3_keys", SeedColumns(), status_map(),
                            chunk_size=4, now=NOW)
            assert rows(engine, tables) == {  # the seed table has no schema here
                k: tuple(x.replace("pama.", "") if isinstance(x, str) else x for x in v)
                for k, v in EXPECTED.items()}
    finally:
        engine.dispose()
