"""Raw rows in one PostgreSQL database, hourly rows in another (the seed's IoT and HQ
databases): the staged path, and the in-database path when both blocks are one database."""

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import insert, text, update

from flows.backfill import hourly_backfill
from flows.hourly_aggregation import hourly_aggregation, watermark_name
from shopfloor.db.watermark import get_watermark
from tests.integration.aggregation.conftest import assert_hourly_equal, expected_hourly, readings

LOCS = ["L001", "L002", "L003"]
# Across the New York fall-back (2024-11-03 01:00 happens twice).
DATA_START, DATA_END = datetime(2024, 11, 2, 0, tzinfo=UTC), datetime(2024, 11, 4, 12, tzinfo=UTC)
ZONE = "America/New_York"


async def _artifact_data(key: str):
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort="CREATED_DESC", limit=1)
    return found[0].data


def test_hourly_between_two_databases_is_staged_exact_and_rerun_safe(two_pg):
    source, target = two_pg
    # A loc_id that CSV must quote, and an hour whose humidity is NULL (COPY's NULL).
    rows = readings([*LOCS, 'L"4,b'], DATA_START, DATA_END)
    for r in rows:
        if r["loc_id"] == "L003" and r["capture_dt"] < DATA_START + timedelta(hours=1):
            r["humidity"] = None
    source.insert_raw(rows)
    with target.engine.begin() as conn:  # thresholds live in the target (HQ) database
        conn.execute(insert(target.tables.location).values(
            loc_id="L001", temperature_max=31.0, active=True))
    kwargs = {"start": DATA_START, "end": DATA_END, "source_db": source.block,
              "target_db": target.block, "timezone": ZONE}
    first = hourly_aggregation(**kwargs)
    expected = expected_hourly(rows, ZONE)
    assert_hourly_equal(target.hourly(), expected)
    assert target.hourly()[("L003", "20241101", "20")]["humidity_avg"] is None
    assert source.hourly() == {}
    assert first["path"] == "staged"
    assert first["groups"] == first["upserted"] == len(expected)
    assert first["raw_rows"] == len(rows)
    # Only rows of active locations come back; their breaches are alerted once.
    assert {r["loc_id"] for r in first["rows"]} == {"L001"}
    assert_hourly_equal({(r["loc_id"], r["ymd"], r["hh"]): r for r in first["rows"]},
                        {k: v for k, v in expected.items() if k[0] == "L001"})
    breaching = sum((v["temperature_max"] > 31.0) + (v["temperature_avg"] > 31.0)
                    for k, v in expected.items() if k[0] == "L001")
    assert first["breaches"] == breaching > 0
    assert first["alert_events"] == len({k for k, v in expected.items()
                                         if k[0] == "L001" and v["temperature_max"] > 31.0})
    assert json.loads(asyncio.run(_artifact_data("hourly-aggregation")))[0]["path"] == "staged"

    before = target.hourly()
    again = hourly_aggregation(**kwargs)
    assert target.hourly() == before  # updated_at included
    assert (again["upserted"], again["unchanged"], again["alert_events"]) == (0, len(before), 0)

    # A corrected reading changes one hour; an hourly row without raw rows is stale.
    first_row = rows[0]
    with source.engine.begin() as conn:
        raw = source.tables.temperature_raw
        conn.execute(update(raw).where(raw.c.loc_id == first_row["loc_id"],
                                       raw.c.capture_dt == first_row["capture_dt"])
                     .values(temperature=first_row["temperature"] + 50))
        stale = {"loc_id": "L999", "ymd": "20241102", "hh": "12", "sample_count": 1,
                 "updated_at": datetime.now(UTC)}
    with target.engine.begin() as conn:
        conn.execute(insert(target.tables.temperature_hourly).values(**stale))
    third = hourly_aggregation(**kwargs)
    after = target.hourly()
    changed = [k for k in before if after[k] != before[k]]
    assert third["upserted"] == len(changed) == 1
    assert after[changed[0]]["temperature_max"] == first_row["temperature"] + 50
    assert third["stale_rows"] == 1 and ("L999", "20241102", "12") in after


def test_incremental_runs_between_two_databases_catch_late_rows(two_pg):
    source, target = two_pg
    source.insert_raw(readings(LOCS, DATA_START, DATA_END))
    blocks = {"source_db": source.block, "target_db": target.block}
    first = hourly_aggregation(**blocks)
    assert first["path"] == "staged" and first["late_rows"] == first["raw_rows"] > 0
    before = target.hourly()
    with target.engine.connect() as conn:
        mark = get_watermark(conn, target.tables, watermark_name(source.block))
    late = {"loc_id": "L002", "capture_dt": datetime(2024, 11, 3, 5, 30, tzinfo=UTC),
            "temperature": 99.5, "humidity": None, "pcv_temperature": 21.0,
            "device": "plc-1", "ingested_at": datetime.now(UTC)}
    source.insert_raw([late])
    second = hourly_aggregation(**blocks)
    after, key = target.hourly(), ("L002", "20241103", "05")
    assert second["upserted"] == 1
    assert after[key]["sample_count"] == before[key]["sample_count"] + 1
    assert after[key]["temperature_max"] == 99.5
    assert {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key}
    with target.engine.connect() as conn:
        assert get_watermark(conn, target.tables, watermark_name(source.block)) > mark


def test_a_target_that_alters_rows_fails_validation_and_keeps_nothing(two_pg):
    source, target = two_pg
    source.insert_raw(readings(LOCS, DATA_START, DATA_START + timedelta(hours=3)))
    with target.engine.begin() as conn:  # a target that silently miscounts
        conn.execute(text(
            "CREATE FUNCTION bump() RETURNS trigger AS $$ BEGIN "
            "NEW.sample_count := NEW.sample_count + 1; RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER bump BEFORE INSERT ON temperature_hourly "
                          "FOR EACH ROW EXECUTE FUNCTION bump()"))
    state = hourly_aggregation(start=DATA_START, end=DATA_START + timedelta(hours=3),
                               source_db=source.block, target_db=target.block,
                               return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "9 groups in the source adding up to" in message and "0 in the target" in message
    assert target.hourly() == {}
    with target.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER bump ON temperature_hourly"))
        conn.execute(text("DROP FUNCTION bump()"))


def test_hourly_in_one_database_takes_the_in_database_path(db):
    rows = readings(LOCS, DATA_START, DATA_END)
    db.insert_raw(rows)
    summary = hourly_aggregation(start=DATA_START, end=DATA_END, source_db=db.block,
                                 target_db=db.block, timezone=ZONE)
    assert summary["path"] == "in-database"
    expected = expected_hourly(rows, ZONE)
    assert_hourly_equal(db.hourly(), expected)
    assert (summary["groups"], summary["upserted"], summary["raw_rows"]) == (
        len(expected), len(expected), len(rows))
    assert summary["rows"] == []  # no active location: nothing to check against thresholds


def test_backfill_between_two_databases_is_staged_exact_and_rerun_safe(two_pg):
    source, target = two_pg
    rows = readings(LOCS, datetime(2024, 3, 29, 20, tzinfo=UTC),
                    datetime(2024, 4, 2, 2, tzinfo=UTC), step_minutes=13)
    source.insert_raw(rows)
    kwargs = {"start_date": date(2024, 3, 30), "end_date": date(2024, 4, 1),
              "chunk_hours": 24, "max_concurrency": 2, "source_db": source.block,
              "target_db": target.block, "timezone": "Europe/Berlin"}
    summary = hourly_backfill(**kwargs)
    expected = expected_hourly(rows, "Europe/Berlin", datetime(2024, 3, 30),
                               datetime(2024, 4, 2))
    assert_hourly_equal(target.hourly(), expected)
    assert summary["path"] == "staged"
    assert (summary["chunks"], summary["groups"], summary["upserted"]) == (
        3, len(expected), len(expected))
    before = target.hourly()
    again = hourly_backfill(**kwargs)
    assert target.hourly() == before
    assert (again["upserted"], again["unchanged"]) == (0, len(expected))


def test_under_a_one_slot_limit_one_chunk_aggregates_while_another_writes(two_pg,
                                                                         warehouse_limit):
    source, target = two_pg
    rows = readings(LOCS, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 5, tzinfo=UTC),
                    step_minutes=13)
    source.insert_raw(rows)
    summary = hourly_backfill(date(2024, 5, 1), date(2024, 5, 4), chunk_hours=24,
                              max_concurrency=4, source_db=source.block,
                              target_db=target.block)
    expected = expected_hourly(rows, "UTC", datetime(2024, 5, 1), datetime(2024, 5, 5))
    assert_hourly_equal(target.hourly(), expected)
    # two in flight (the slot's writer and the next chunk's GROUP BY), not max_concurrency
    assert (summary["concurrency"], summary["chunks"], summary["failed"]) == (2, 4, 0)
    with get_client(sync_client=True) as client:  # every chunk gave its slot back
        assert client.read_global_concurrency_limit_by_name(warehouse_limit).active_slots == 0
