"""hourly-backfill: chunks, a failing chunk that does not stop the others, repair by rerun."""

import asyncio
from datetime import UTC, date, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import insert

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
