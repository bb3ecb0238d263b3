"""master-data-sync: upsert, deactivate missing locations, quarantine bad rows."""

import json

from sqlalchemy import insert, select

from flows.master_sync import master_data_sync
from shopfloor.aggregation.locations import COLUMNS


def loc(**values) -> dict:
    return {**dict.fromkeys(COLUMNS), **values}


def locations(db) -> dict[str, dict]:
    loc = db.tables.location
    with db.engine.connect() as conn:
        return {r["loc_id"]: dict(r) for r in conn.execute(select(loc)).mappings()}


def test_sync_upserts_deactivates_missing_and_quarantines_bad_rows(sqlite_db, db):
    source, target = sqlite_db, db
    with source.engine.begin() as conn:
        conn.execute(insert(source.tables.location), [
            loc(loc_id="A", name="oven", site="P1", temperature_min=10.0,
                temperature_max=30.0, active=True),
            loc(loc_id="B", name="bad", humidity_min=80.0, humidity_max=20.0, active=True),
            loc(loc_id="C", name="press", active=True),
        ])
    with target.engine.begin() as conn:
        conn.execute(insert(target.tables.location), [
            loc(loc_id="A", name="old name", temperature_max=99.0, active=True),
            loc(loc_id="B", name="last good", humidity_max=70.0, active=True),
            loc(loc_id="D", name="removed line", active=True),
        ])
    result = master_data_sync(source_db=source.block, target_db=target.block)
    got = locations(target)
    assert (got["A"]["name"], got["A"]["temperature_max"], got["A"]["site"]) == ("oven", 30.0, "P1")
    assert got["C"]["active"] is True and got["C"]["name"] == "press"
    assert got["D"]["active"] is False  # kept, not deleted
    assert got["B"]["name"] == "last good" and got["B"]["active"] is True
    assert result["deactivated"] == ["D"] and result["quarantined"] == 1
    with target.engine.connect() as conn:
        (q,) = conn.execute(select(target.tables.quarantine)).mappings().all()
    assert q["source"] == "master-data-sync" and json.loads(q["record"])["loc_id"] == "B"
    assert "threshold_min_not_above_max" in q["reasons"]

    again = master_data_sync(source_db=source.block, target_db=target.block)
    assert (again["upserted"], again["unchanged"], again["deactivated"]) == (0, 2, [])
    assert locations(target) == got


def test_an_empty_source_fails_and_deactivates_nothing(sqlite_db, db):
    source, target = sqlite_db, db
    with target.engine.begin() as conn:
        conn.execute(insert(target.tables.location), [loc(loc_id="A", active=True)])
    state = master_data_sync(source_db=source.block, target_db=target.block,
                             return_state=True)
    assert state.is_failed()
    assert "the source has no locations" in state.message
    assert locations(target)["A"]["active"] is True
    with target.engine.begin() as conn:
        conn.execute(target.tables.location.delete())
    idle = master_data_sync(source_db=source.block, target_db=target.block, return_state=True)
    assert idle.is_completed() and idle.name == "Idle"


def test_quarantined_source_rows_end_the_run_degraded(sqlite_db, db):
    with sqlite_db.engine.begin() as conn:
        conn.execute(insert(sqlite_db.tables.location), [
            loc(loc_id="A", active=True),
            loc(loc_id="B", temperature_min=5.0, temperature_max=1.0, active=True)])
    state = master_data_sync(source_db=sqlite_db.block, target_db=db.block,
                             return_state=True)
    assert state.name == "Degraded" and "1 of 2 source locations quarantined" in state.message
    assert set(locations(db)) == {"A"}
