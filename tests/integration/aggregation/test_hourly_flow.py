"""hourly-aggregation on real SQLite, PostgreSQL and MariaDB: exact values, zones, reruns."""

from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import insert

from flows.hourly_aggregation import hourly_aggregation, watermark_name
from shopfloor.db.watermark import get_watermark
from tests.integration.aggregation.conftest import (
    assert_hourly_equal,
    expected_hourly,
    readings,
)

LOCS = ["L001", "L002", "L003"]
# Around the New York fall-back (2024-11-03 01:00 happens twice) and a day either side.
DATA_START, DATA_END = datetime(2024, 11, 2, 0, tzinfo=UTC), datetime(2024, 11, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_exact_aggregates_of_a_local_window(any_db, zone):
    rows = readings(LOCS, DATA_START, DATA_END)
    any_db.insert_raw(rows)
    first, last = datetime(2024, 11, 2, 22), datetime(2024, 11, 3, 4)  # local wall clock
    summary = hourly_aggregation(start=first, end=last, source_db=any_db.block,
                                 target_db=any_db.block, timezone=zone)
    expected = expected_hourly(rows, zone, first, last)
    # MySQL/MariaDB store the foundation's Float columns as 32-bit FLOAT and send them
    # back as text with 6 significant digits.
    rel = 1e-5 if any_db.dialect in ("mysql", "mariadb") else 1e-9
    assert_hourly_equal(any_db.hourly(), expected, rel=rel)
    assert summary["groups"] == summary["upserted"] == len(expected)
    assert summary["raw_rows"] == sum(e["sample_count"] for e in expected.values())
    if zone == "America/New_York":  # 01:00 EDT and 01:00 EST share one row
        assert expected[("L001", "20241103", "01")]["sample_count"] > 1.5 * expected[
            ("L001", "20241103", "00")]["sample_count"]


def test_rerun_changes_nothing_not_even_updated_at(any_db):
    db = any_db
    db.insert_raw(readings(LOCS, DATA_START, DATA_END))
    kwargs = {"start": DATA_START, "end": DATA_END, "source_db": db.block,
              "target_db": db.block, "timezone": "Europe/Berlin"}
    hourly_aggregation(**kwargs)
    before = db.hourly()
    again = hourly_aggregation(**kwargs)
    assert db.hourly() == before
    assert (again["upserted"], again["unchanged"]) == (0, len(before))


def test_source_and_target_can_be_different_databases(sqlite_db, pg_url, prefect_harness):
    from tests.integration.aggregation.conftest import make_db

    target = make_db(pg_url)
    rows = readings(LOCS, DATA_START, DATA_END)
    sqlite_db.insert_raw(rows)
    hourly_aggregation(start=DATA_START, end=DATA_END, source_db=sqlite_db.block,
                       target_db=target.block, timezone="Asia/Makassar")
    assert_hourly_equal(target.hourly(), expected_hourly(rows, "Asia/Makassar"))
    assert sqlite_db.hourly() == {}
    target.engine.dispose()


def test_late_rows_reaggregate_only_their_hour_and_move_the_watermark(any_db):
    db = any_db
    db.insert_raw(readings(LOCS, DATA_START, DATA_END))
    first = hourly_aggregation(source_db=db.block, target_db=db.block, timezone="UTC")
    assert first["late_rows"] == first["raw_rows"] > 0  # no watermark: everything catches up
    before = db.hourly()
    with db.engine.connect() as conn:
        mark = get_watermark(conn, db.tables, watermark_name(db.block))
    assert mark is not None

    late = {"loc_id": "L002", "capture_dt": datetime(2024, 11, 3, 5, 30, tzinfo=UTC),
            "temperature": 99.5, "humidity": None, "pcv_temperature": 21.0,
            "device": "plc-1", "ingested_at": datetime.now(UTC)}
    db.insert_raw([late])
    second = hourly_aggregation(source_db=db.block, target_db=db.block, timezone="UTC")
    after = db.hourly()
    key = ("L002", "20241103", "05")
    assert after[key]["sample_count"] == before[key]["sample_count"] + 1
    assert after[key]["temperature_max"] == 99.5
    assert second["upserted"] == 1
    assert {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key}
    with db.engine.connect() as conn:
        assert get_watermark(conn, db.tables, watermark_name(db.block)) > mark


def test_a_failed_write_leaves_the_watermark_and_the_next_run_repairs(db):
    old = datetime.now(UTC) - timedelta(days=1)
    db.insert_raw(readings(LOCS, DATA_START, DATA_END, ingested_at=old))
    # Completed or Degraded (the last closed hour of the wall clock has no reading here):
    # what counts is the watermark and the rows.
    first = hourly_aggregation(source_db=db.block, target_db=db.block, return_state=True)
    assert first.is_completed(), first
    with db.engine.connect() as conn:
        mark = get_watermark(conn, db.tables, watermark_name(db.block))
    late = {"loc_id": "L001", "capture_dt": datetime(2024, 11, 2, 3, 1, tzinfo=UTC),
            "temperature": -5.0, "humidity": 40.0, "pcv_temperature": 21.0,
            "device": "plc-1", "ingested_at": datetime.now(UTC)}
    db.insert_raw([late])
    db.fail_writes_of_day("20241102")
    state = hourly_aggregation(source_db=db.block, target_db=db.block, return_state=True)
    assert state.is_failed()
    with db.engine.connect() as conn:
        assert get_watermark(conn, db.tables, watermark_name(db.block)) == mark
    db.allow_writes()
    repair = hourly_aggregation(source_db=db.block, target_db=db.block, return_state=True)
    assert repair.is_completed(), repair
    assert db.hourly()[("L001", "20241102", "03")]["temperature_max"] != -5.0
    with db.engine.connect() as conn:
        assert get_watermark(conn, db.tables, watermark_name(db.block)) > mark


async def _artifact(key: str):
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort="CREATED_DESC", limit=1)
    return found[0]


async def _breach_events(since: datetime) -> list:
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    flt = EventFilter(occurred=EventOccurredFilter(since=since),
                      event=EventNameFilter(name=["shopfloor.threshold.breached"]),
                      resource=EventResourceFilter(id=["shopfloor.location.L001"]))
    async with get_client() as client:
        return (await client.read_events(filter=flt, limit=50)).events


def _wait_for_breach_events(since: datetime) -> list:
    """Events are stored asynchronously by the server: poll (this bounds the wait, it
    asserts nothing about time)."""
    import asyncio
    import time

    for _ in range(240):  # up to 2 minutes on a loaded machine; returns when they are there
        found = asyncio.run(_breach_events(since))
        if found:
            return found
        time.sleep(0.5)
    return []


def test_threshold_breaches_are_listed_and_alerted_once(db):
    import asyncio

    since = datetime.now(UTC)

    rows = readings(["L001", "L002"], DATA_START, DATA_START + timedelta(hours=6))
    rows.append({**rows[0], "capture_dt": DATA_START + timedelta(hours=2, minutes=1),
                 "temperature": 45.0})
    db.insert_raw(rows)
    with db.engine.begin() as conn:
        conn.execute(insert(db.tables.location), [
            {"loc_id": "L001", "name": "oven", "temperature_max": 40.0, "active": True},
            {"loc_id": "L002", "name": "idle", "temperature_max": 40.0, "active": False},
        ])
    kwargs = {"start": DATA_START, "end": DATA_START + timedelta(hours=6),
              "source_db": db.block, "target_db": db.block}
    first = hourly_aggregation(**kwargs)
    assert (first["breaches"], first["alert_events"]) == (1, 1)
    artifact = asyncio.run(_artifact("hourly-aggregation-alerts"))
    assert "| L001 | 20241102 | 02 | temperature max 45.00 > max 40 |" in artifact.data
    (event,) = _wait_for_breach_events(since)
    assert event.payload["ymd"] == "20241102" and event.payload["hh"] == "02"
    assert event.payload["breaches"][0]["value"] == 45.0
    again = hourly_aggregation(**kwargs)  # nothing changed: listed again, not re-alerted
    assert (again["breaches"], again["alert_events"]) == (1, 0)
