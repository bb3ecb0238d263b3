"""hourly-backfill: chunks, a failing chunk that does not stop the others, repair by rerun."""

import asyncio
from datetime import UTC, date, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import insert, select

from flows.backfill import hourly_backfill
from tests.integration.aggregation.conftest import assert_hourly_equal, expected_hourly, readings

LOCS = ["L001", "L002"]
# Three local days in Europe/Berlin, across the spring-forward night of 2024-03-31.
DAYS = (date(2024, 3, 30), date(2024, 4, 1))
ZONE = "Europe/Berlin"


async def _latest_progress() -> float:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["hourly-backfill-progress"])),
            sort="CREATED_DESC", limit=1)
    return float(found[0].data)


def test_backfill_matches_python_and_a_failed_chunk_is_repaired_by_a_rerun(db):
    rows = readings(LOCS, datetime(2024, 3, 29, 20, tzinfo=UTC),
                    datetime(2024, 4, 2, 2, tzinfo=UTC), step_minutes=11)
    db.insert_raw(rows)
    expected = expected_hourly(rows, ZONE, datetime(2024, 3, 30), datetime(2024, 4, 2))
    db.fail_writes_of_day("20240331")
    with db.engine.begin() as conn:  # L001 has a limit; L002 has none and never breaches
        conn.execute(insert(db.tables.location).values(loc_id="L001", temperature_max=31.5,
                                                       active=True))
    kwargs = {"start_date": DAYS[0], "end_date": DAYS[1], "chunk_hours": 12,
              "max_concurrency": 2, "source_db": db.block, "target_db": db.block,
              "timezone": ZONE}

    state = hourly_backfill(**kwargs, return_state=True)
    assert state.is_failed()
    assert "2 of 6 chunks failed" in str(state.message) + str(state.result(raise_on_failure=False))
    partial = db.hourly()
    assert {k[1] for k in partial} == {"20240330", "20240401"}  # the other chunks committed
    assert_hourly_equal(partial, {k: v for k, v in expected.items() if k[1] != "20240331"})
    assert asyncio.run(_latest_progress()) == 100.0

    db.allow_writes()
    summary = hourly_backfill(**kwargs)
    assert_hourly_equal(db.hourly(), expected)
    assert summary["failed"] == 0
    assert summary["breaches"] == sum(
        (v["temperature_max"] > 31.5) + (v["temperature_avg"] > 31.5)
        for k, v in expected.items() if k[0] == "L001") > 0
    assert summary["upserted"] == len([k for k in expected if k[1] == "20240331"])
    repaired = db.hourly()
    assert all(repaired[k]["updated_at"] == partial[k]["updated_at"] for k in partial)
    assert len({k[2] for k in expected if k[1] == "20240331"}) == 23  # 02:00 never happened


def test_backfill_across_databases_fetches_groups_and_matches_python(sqlite_db, pg_url,
                                                                       prefect_harness):
    from tests.integration.aggregation.conftest import make_db

    target = make_db(pg_url)
    rows = readings(LOCS, datetime(2024, 3, 29, 20, tzinfo=UTC),
                    datetime(2024, 4, 2, 2, tzinfo=UTC), step_minutes=17)
    sqlite_db.insert_raw(rows)
    summary = hourly_backfill(DAYS[0], DAYS[1], chunk_hours=30, max_concurrency=3,
                              source_db=sqlite_db.block, target_db=target.block, timezone=ZONE)
    expected = expected_hourly(rows, ZONE, datetime(2024, 3, 30), datetime(2024, 4, 2))
    assert_hourly_equal(target.hourly(), expected)
    assert (summary["chunks"], summary["groups"]) == (3, len(expected))
    target.engine.dispose()


async def _chunk_runs(flow_run_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted((r for r in runs if r.name.startswith("aggregate-chunk")),
                  key=lambda r: r.start_time)


def test_chunks_run_no_more_at_once_than_the_warehouse_limit_has_slots(db, warehouse_limit):
    rows = readings(LOCS, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC),
                    step_minutes=30)
    db.insert_raw(rows)
    state = hourly_backfill(date(2024, 5, 1), date(2024, 5, 2), chunk_hours=12,
                            max_concurrency=4, source_db=db.block, target_db=db.block,
                            return_state=True)
    summary = state.result()
    assert summary["chunks"] == 4 and summary["failed"] == 0
    assert summary["concurrency"] == 1  # the limit's one slot, not max_concurrency=4
    assert summary["raw_rows"] == len(rows)
    chunks = asyncio.run(_chunk_runs(state.state_details.flow_run_id))
    assert len(chunks) == 4
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_time >= before.end_time  # one after the other


def test_without_the_limit_day_chunks_run_max_concurrency_at_once_on_postgresql(db):
    rows = readings(LOCS, datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 4, tzinfo=UTC),
                    step_minutes=30)
    db.insert_raw(rows)
    summary = hourly_backfill(date(2024, 6, 1), date(2024, 6, 3), chunk_hours=24,
                              max_concurrency=3, source_db=db.block, target_db=db.block)
    # SQLite takes one writer at a time: its chunks run one after the other.
    assert summary["concurrency"] == (1 if db.engine.dialect.name == "sqlite" else 3)
    assert summary["chunks"] == 3 and summary["failed"] == 0
    assert summary["raw_rows"] == len(rows)


def test_chunks_that_share_a_day_run_one_at_a_time_and_the_day_adds_up(db):
    rows = readings(LOCS, datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 2, tzinfo=UTC),
                    step_minutes=10)
    db.insert_raw(rows)
    summary = hourly_backfill(date(2024, 7, 1), date(2024, 7, 1), chunk_hours=6,
                              max_concurrency=4, source_db=db.block, target_db=db.block)
    assert summary["concurrency"] == 1 and summary["chunks"] == 4 and summary["failed"] == 0
    with db.engine.connect() as conn:
        days = conn.execute(select(db.tables.temperature_daily.c.loc_id,
                                   db.tables.temperature_daily.c.sample_count,
                                   db.tables.temperature_daily.c.hours)
                            .where(db.tables.temperature_daily.c.ymd == "20240701")).all()
    per_loc = {loc: sum(1 for r in rows if r["loc_id"] == loc) for loc in LOCS}
    assert sorted((r.loc_id, r.sample_count, r.hours) for r in days) == [
        (loc, per_loc[loc], 24) for loc in LOCS]
