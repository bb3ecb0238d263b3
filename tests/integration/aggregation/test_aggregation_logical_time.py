"""Scheduled hourly runs on real SQLite/PostgreSQL: logical time, closed hours, catch-up,
honest outcomes, the completion event and the shared warehouse limit.

A run "scheduled for" a past instant is a real flow run created in the Scheduled state
with that time and executed by Prefect's engine, as a worker would run a late run.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Scheduled, State

from flows.hourly_aggregation import (
    closed_watermark_name,
    hourly_aggregation,
)
from shopfloor.db.watermark import get_watermark
from tests.integration.aggregation.conftest import (
    assert_hourly_equal,
    expected_hourly,
    readings,
)

LOCS = ["L001", "L002"]
# The open hour of the first scheduled run: well in the past, so the engine never waits.
H = (datetime.now(UTC) - timedelta(hours=8)).replace(minute=0, second=0, microsecond=0)


def run_scheduled_for(scheduled: datetime, **params) -> State:
    """Run hourly-aggregation as a flow run scheduled for ``scheduled`` (a late run)."""
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(hourly_aggregation, parameters=params,
                                          state=Scheduled(scheduled_time=scheduled))
    assert flow_run.expected_start_time == scheduled
    return run_flow(hourly_aggregation, flow_run=flow_run, parameters=params,
                    return_type="state")


def hours_of(db) -> set[str]:
    return {f"{ymd} {hh}" for _, ymd, hh in db.hourly()}


def label(t: datetime) -> str:
    return t.strftime("%Y%m%d %H")


def test_the_open_hour_is_left_for_the_run_one_hour_later(db):
    rows = readings(LOCS, H - timedelta(hours=2), H + timedelta(minutes=50),
                    ingested_at=datetime.now(UTC) - timedelta(hours=1))
    # One row ingested last moves the late-data watermark past the others for good.
    rows += readings(["L003"], H - timedelta(hours=2), H - timedelta(hours=2, minutes=-1),
                     ingested_at=datetime.now(UTC))
    db.insert_raw(rows)
    params = {"source_db": db.block, "target_db": db.block}
    # Scheduled for H:02 and started hours late: its open hour is H, whatever the clock says.
    first = run_scheduled_for(H + timedelta(minutes=2), **params)
    assert first.is_completed() and first.name == "Completed"
    assert hours_of(db) == {label(H - timedelta(hours=2)), label(H - timedelta(hours=1))}
    # Every row was ingested before that run, so the late-data watermark is past them:
    # the hour left open is written by the closed-hour catch-up of the next slot.
    second = run_scheduled_for(H + timedelta(hours=1, minutes=2), **params)
    assert second.is_completed()
    assert second.result()["late_rows"] == 1  # the last row again (the watermark overlap)
    assert_hourly_equal(db.hourly(), expected_hourly(rows, "UTC"))
    with db.engine.connect() as conn:
        mark = get_watermark(conn, db.tables, closed_watermark_name(db.block))
    assert datetime.fromisoformat(mark) == H + timedelta(hours=1)


def test_catch_up_after_an_outage_leaves_no_hole_and_names_an_hour_without_readings(db):
    old = H - timedelta(days=1)
    rows = [r for r in readings(LOCS, H - timedelta(hours=6), H + timedelta(minutes=30),
                                ingested_at=old)
            if not H - timedelta(hours=3) <= r["capture_dt"] < H - timedelta(hours=2)]
    db.insert_raw(rows)
    params = {"source_db": db.block, "target_db": db.block, "late_data": False}
    first = run_scheduled_for(H - timedelta(hours=5, minutes=-5), **params)
    assert first.is_completed() and hours_of(db) == {label(H - timedelta(hours=6))}
    # The worker is down for five hours; the next run that happens is H:05's.
    state = run_scheduled_for(H + timedelta(minutes=5), **params)
    assert state.is_completed() and state.name == "Degraded"
    assert state.message == f"no readings for hour {label(H - timedelta(hours=3))} (UTC)"
    summary = state.result()
    assert (summary["hours_written"], summary["empty_hours"]) == (4, 1)
    expected = expected_hourly(rows, "UTC", (H - timedelta(hours=6)).replace(tzinfo=None),
                               H.replace(tzinfo=None))
    assert_hourly_equal(db.hourly(), expected)  # every closed hour, none open


def test_catch_up_beyond_the_limit_is_degraded_and_names_the_backfill(db):
    db.insert_raw(readings(LOCS, H - timedelta(hours=6), H, ingested_at=H))
    params = {"source_db": db.block, "target_db": db.block, "late_data": False}
    run_scheduled_for(H - timedelta(hours=5, minutes=-5), **params)
    state = run_scheduled_for(H + timedelta(minutes=5), max_catchup_hours=2, **params)
    assert state.name == "Degraded"
    assert "run hourly-backfill" in state.message
    assert label(H - timedelta(hours=5)).split()[0] in state.message
    assert hours_of(db) == {label(H - timedelta(hours=k)) for k in (6, 2, 1)}


def test_a_plain_call_uses_the_wall_clock_and_never_writes_the_current_hour(db):
    now = datetime.now(UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    db.insert_raw(readings(LOCS, current - timedelta(hours=1), now, step_minutes=1))
    hourly_aggregation(source_db=db.block, target_db=db.block)
    # A run at hh:59:59.9 could see the clock pass the hour: then both hours are closed.
    assert label(current) not in hours_of(db) or datetime.now(UTC) >= current + timedelta(
        hours=1)
    assert label(current - timedelta(hours=1)) in hours_of(db)


async def _events(name: str, resource: str, since: datetime) -> list:
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    flt = EventFilter(occurred=EventOccurredFilter(since=since),
                      event=EventNameFilter(name=[name]),
                      resource=EventResourceFilter(id=[resource]))
    async with get_client() as client:
        return (await client.read_events(filter=flt, limit=50)).events


def wait_for_events(name: str, resource: str, since: datetime) -> list:
    """Events are stored asynchronously: poll (bounds the wait, asserts nothing on time)."""
    for _ in range(240):
        found = asyncio.run(_events(name, resource, since))
        if found:
            return found
        time.sleep(0.5)
    return []


def test_writes_hold_the_warehouse_limit_and_the_run_reports_completion(db, warehouse_limit):
    since = datetime.now(UTC) - timedelta(seconds=5)
    rows = readings(LOCS, H - timedelta(hours=2), H, ingested_at=H)
    db.insert_raw(rows)
    state = run_scheduled_for(H + timedelta(minutes=2), source_db=db.block, target_db=db.block)
    assert state.is_completed() and state.name == "Completed"
    (done,) = wait_for_events("shopfloor.hourly.completed",
                              f"shopfloor.warehouse.{db.block}", since)
    assert done.payload["hours_written"] == 2 and done.payload["raw_rows"] == len(rows)
    assert done.payload["last_hour"] == label(H - timedelta(hours=1))
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(warehouse_limit)
    # Prefect's own event for a slot taken: the write held the shared limit.
    assert wait_for_events("prefect.concurrency-limit.acquired",
                           f"prefect.concurrency-limit.{limit.id}", since)
    assert limit.active_slots == 0  # and released it: the next writer gets it
