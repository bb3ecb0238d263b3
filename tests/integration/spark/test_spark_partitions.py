"""Historian discovery through Ignition's sqlth_partitions (non-monthly spans, two drivers,
a retagged tag path) and the trailing re-check of late rows: local Spark against a
PostgreSQL database of its own (a catalog there would switch every other test's
historian to it)."""

import json
import os
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from blocks.bootstrap import connector_from_url
from flows.spark_extraction import spark_sensor_extraction
from shopfloor.db.engine import make_engine
from shopfloor.db.schema import Tables, historian_data_table
from shopfloor.historian.partitions import Partition
from shopfloor.historian.plan import epoch_ms
from shopfloor.historian.seed import BAD, GOOD
from tests.historian_catalog import seed_catalog
from tests.integration.spark.test_spark_extraction import _snapshot, read_output
from tests.pg import throwaway_database

pytestmark = pytest.mark.usefixtures("spark")

H = 3_600_000


def ms(d: date, hours: float = 0) -> int:
    return epoch_ms(d) + int(hours * H)


JAN29, JAN30, JAN31, FEB1, FEB2, FEB3 = (date(2026, 1, 29), date(2026, 1, 30),
                                         date(2026, 1, 31), date(2026, 2, 1),
                                         date(2026, 2, 2), date(2026, 2, 3))
RETAG = ms(JAN31, 18)  # line1/c moves from driver 1 (id 3) to driver 2 (id 4)
# (id, tagpath, scan class, created, retired); scan class 10 -> driver 1, 20 -> driver 2
TAGS = [(1, "line1/a", 10, 0, None), (2, "line1/b", 20, 0, None),
        (3, "line1/c", 10, 0, RETAG), (4, "line1/c", 20, RETAG, None),
        (5, "line2/z", 10, 0, None), (6, "line2/y", 20, 0, None)]
# Spans that are not months, cut mid-day, crossing the month boundary, per driver; one
# table listed twice (dedupe) and one partition ending before the window.
PARTITIONS = [
    Partition("hist_d1_a", 1, ms(JAN29), ms(JAN31, 12)),
    Partition("hist_d1_a", 1, ms(JAN29), ms(JAN31, 12)),
    Partition("hist_d1_b", 1, ms(JAN31, 12), ms(FEB3)),
    Partition("hist_d2_a", 2, ms(JAN29), ms(FEB1, 6)),
    Partition("hist_d2_b", 2, ms(FEB1, 6), ms(FEB3)),
    Partition("hist_d2_old", 2, ms(date(2025, 12, 1)), ms(JAN29)),
]
DRIVER = {1: 1, 2: 2, 3: 1, 4: 2, 5: 1, 6: 2}


def table_of(tag_id: int, t_ms: int) -> str:
    drv = DRIVER[tag_id]
    return next(p.table for p in PARTITIONS if p.drvid == drv and p.start_ms <= t_ms < p.end_ms)


def readings() -> list[dict]:
    """Hourly readings of every tag over its lifetime from 2026-01-29 to 2026-02-03, every
    7th one bad; each in the table of its driver that covers its time."""
    rows = []
    for tag_id, _, _, created, retired in TAGS:
        for k, t in enumerate(range(ms(JAN29), ms(FEB3), H)):
            if t < created or (retired is not None and t >= retired):
                continue
            rows.append({"table": table_of(tag_id, t), "tagid": tag_id,
                         "floatvalue": tag_id * 100 + k / 10, "t_stamp": t,
                         "dataintegrity": BAD if (k + tag_id) % 7 == 0 else GOOD})
    return rows


ROWS = readings()


def insert_rows(engine: Engine, tables: Tables, rows: list[dict]) -> None:
    with engine.begin() as conn:
        for name in sorted({r["table"] for r in rows}):
            conn.execute(insert(historian_data_table(tables, name)),
                         [{k: v for k, v in r.items() if k != "table"}
                          for r in rows if r["table"] == name])


@pytest.fixture(scope="module")
def catalog_db(pg_server_url: str, historian_tables: Tables) -> Iterator[Engine]:
    with throwaway_database(pg_server_url, "shopfloor_parts") as url:
        yield from _catalog(make_engine(url), historian_tables)


def _catalog(engine: Engine, historian_tables: Tables) -> Iterator[Engine]:
    historian_tables.sqlth_te.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(historian_tables.sqlth_te), [
            {"id": i, "tagpath": p, "datatype": 1, "created": c, "retired": r}
            for i, p, _, c, r in TAGS])
    seed_catalog(engine, historian_tables, PARTITIONS, {10: 1, 20: 2},
                 {i: sc for i, _, sc, _, _ in TAGS})
    for p in {p.table for p in PARTITIONS}:
        historian_data_table(historian_tables, p).create(engine)
    insert_rows(engine, historian_tables, ROWS)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def catalog_block(prefect_harness, catalog_db: Engine) -> str:
    name = f"hist-parts-{uuid.uuid4().hex[:8]}"
    connector_from_url(catalog_db.url.render_as_string(hide_password=False)).save(name)
    return name


def expected(rows: list[dict], paths: set[str], start: date, end: date
             ) -> set[tuple[int, str, int, float]]:
    path_of = {i: p for i, p, *_ in TAGS}
    lo, hi = ms(start), ms(end) + 24 * H
    return {(r["tagid"], path_of[r["tagid"]], r["t_stamp"], r["floatvalue"]) for r in rows
            if path_of[r["tagid"]] in paths and lo <= r["t_stamp"] < hi
            and r["dataintegrity"] == GOOD}


def as_set(rows: list[dict]) -> set[tuple[int, str, int, float]]:
    return {(r["tagid"], r["tagpath"], int(r["ts"].timestamp() * 1000), r["value"])
            for r in rows}


def recheck_artifact() -> list[dict]:
    """The rows of the newest ``spark-extraction-recheck`` artifact."""
    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=["spark-extraction-recheck"])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    return json.loads(art.data) if isinstance(art.data, str) else art.data


def run(block: str, lake: str, start: date, end: date, **params):
    return spark_sensor_extraction(start=start, end=end, historian_db=block, lake=lake,
                                   spark_master="local[2]", num_partitions=2, **params)


def test_partitions_of_two_drivers_and_a_retagged_path_give_the_exact_rows(catalog_block,
                                                                          lake_block):
    lake, folder = lake_block
    results = run(catalog_block, lake, JAN30, FEB2, tag_patterns=["line1/%"], recheck_days=0)
    assert [(r.month, r.status, r.kind) for r in results] == [
        ("2026-01", "ok", "window"), ("2026-02", "ok", "window")]
    # January reads driver 1's two tables and driver 2's first one (listed twice: once)
    assert results[0].table == "hist_d1_a,hist_d2_a,hist_d1_b"
    assert results[1].table == "hist_d1_b,hist_d2_a,hist_d2_b"
    want = expected(ROWS, {"line1/a", "line1/b", "line1/c"}, JAN30, FEB2)
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert len(rows) == len(want) and as_set(rows) == want
    assert sum(r.source_rows for r in results) == len(want)
    # the retagged path is one tag folder holding both of its ids, each for its own time
    c_rows = [r for r in rows if r["tagpath"] == "line1/c"]
    assert len({r["tag"] for r in c_rows}) == 1
    assert {r["tagid"] for r in c_rows if r["ts"].timestamp() * 1000 < RETAG} == {3}
    assert {r["tagid"] for r in c_rows if r["ts"].timestamp() * 1000 >= RETAG} == {4}
    assert not [r for r in rows if r["tagpath"].startswith("line2/")]


def test_a_month_no_partition_covers_is_missing(catalog_block, lake_block):
    lake, _ = lake_block
    results = run(catalog_block, lake, FEB2, date(2026, 3, 2), tag_patterns=["line1/%"],
                  recheck_days=0)
    assert [(r.month, r.status) for r in results] == [("2026-02", "ok"), ("2026-03", "missing")]


@pytest.mark.parametrize("layout", ["date", "tag"])
def test_a_late_row_is_picked_up_by_the_recheck_and_only_its_day_is_rewritten(
        catalog_db, historian_tables, catalog_block, lake_block, layout):
    lake, folder = lake_block
    paths = {"line2/z", "line2/y"}
    first = run(catalog_block, lake, JAN30, FEB1, tag_patterns=["line2/%"], recheck_days=0,
                layout=layout)
    assert [r.status for r in first] == ["ok", "ok"]
    before = _snapshot(folder)
    # store-and-forward: a reading of 2026-01-31 03:30 arrives after that day was extracted
    late = {"table": "hist_d1_a", "tagid": 5, "floatvalue": -1.5, "t_stamp": ms(JAN31, 3.5),
            "dataintegrity": GOOD}
    insert_rows(catalog_db, historian_tables, [late])
    try:
        results = run(catalog_block, lake, FEB2, FEB2, tag_patterns=["line2/%"], recheck_days=3,
                      layout=layout)
        assert [(r.month, r.kind, r.status) for r in results] == [
            ("2026-02", "window", "ok"), ("2026-01-31", "recheck", "ok")]
        redo = results[1]
        assert redo.source_rows == redo.written_rows == len(expected(ROWS + [late], paths, JAN31,
                                                                     JAN31))
        after = _snapshot(folder)
        for day in ("2026-01-30", "2026-02-01"):  # unchanged days: the very same files
            assert {k: v for k, v in after.items() if f"date={day}" in k} == {
                k: v for k, v in before.items() if f"date={day}" in k}
        old31 = {k for k in before if "date=2026-01-31" in k}
        new31 = {k for k in after if "date=2026-01-31" in k}
        assert old31 and new31 and not old31 & new31  # rewritten: new files only
        assert redo.deleted_files == len(old31)
        assert [(c["date"], c["changed_tags"], c["action"]) for c in recheck_artifact()] == [
            ("2026-01-30", 0, "unchanged"), ("2026-01-31", 1, "rewritten"),
            ("2026-02-01", 0, "unchanged")]
        rows = read_output(os.path.join(folder, "sensor_data"))
        want = expected(ROWS + [late], paths, JAN30, FEB2)
        assert len(rows) == len(want) and as_set(rows) == want
        # nothing changed since: the next re-check rewrites nothing
        again = run(catalog_block, lake, FEB2, FEB2, tag_patterns=["line2/%"], recheck_days=3,
                    layout=layout)
        assert [r.kind for r in again] == ["window"]
    finally:  # the database is the module's: the other layout's run starts without it
        hist = historian_data_table(historian_tables, "hist_d1_a")
        with catalog_db.begin() as conn:
            conn.execute(hist.delete().where(hist.c.tagid == 5,
                                             hist.c.t_stamp == late["t_stamp"]))
