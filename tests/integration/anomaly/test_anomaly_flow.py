"""anomaly-detection on real PostgreSQL behind a real block: findings stored, rerun silent."""

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import func, insert, select

from blocks.bootstrap import connector_from_url
from flows.anomaly_detection import detect_anomalies
from shopfloor.anomaly.findings import Finding
from shopfloor.anomaly.synthetic import synthetic_year
from shopfloor.db.engine import init_db
from shopfloor.tags.registry import TagInfo, register_tags
from tasks import anomaly as anomaly_tasks


@pytest.fixture
def warehouse(pg_engine, pg_url, prefect_harness):
    tables = init_db(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(tables.anomaly.delete())
        conn.execute(tables.temperature_hourly.delete())
    block = f"anom-{uuid.uuid4().hex[:10]}"
    connector_from_url(pg_url).save(block, overwrite=True)
    yield tables, block
    with pg_engine.begin() as conn:
        conn.execute(tables.anomaly.delete())
        conn.execute(tables.temperature_hourly.delete())


@pytest.fixture
def emitted(monkeypatch) -> list[dict]:
    """Every event the anomaly task emits (the real emit still runs)."""
    sent: list[dict] = []
    real = anomaly_tasks.emit

    def spy(**kw):
        sent.append(kw)
        real(**kw)

    monkeypatch.setattr(anomaly_tasks, "emit", spy)
    return sent


def test_findings_are_stored_and_announced_once(pg_engine, warehouse, emitted):
    tables, block = warehouse
    syn = synthetic_year(n_locations=2, seed=21, timezone="UTC")
    rows = syn.frame.assign(updated_at=datetime.now(UTC)).to_dict("records")
    with pg_engine.begin() as conn:
        conn.execute(insert(tables.temperature_hourly), rows)
    kw = {"start": datetime(2024, 1, 1), "end": datetime(2025, 1, 1), "target_db": block,
          "timezone": "UTC", "series": "measures"}
    first = detect_anomalies(**kw)
    with pg_engine.connect() as conn:
        stored = conn.execute(select(tables.anomaly)).mappings().all()
    assert first["new"] == len(stored) == first["events"] == len(emitted) > 0
    assert {r["kind"] for r in stored} == {"deviation", "spike", "flatline", "gap"}
    # Each planted stuck run is one flatline row, keyed by its first hour.
    planted = syn.truth["flatline"]
    starts = int((planted[:, 1:] & ~planted[:, :-1]).sum())
    assert sum(r["kind"] == "flatline" for r in stored) == starts > 0
    event = emitted[0]
    assert event["event"] == "shopfloor.anomaly.detected"
    assert event["resource_id"] == f"shopfloor.location.{event['payload']['loc_id']}"
    assert event["shopfloor.anomaly.kind"] == event["payload"]["kind"]

    again = detect_anomalies(**kw)
    assert again["findings"] == first["findings"]
    assert (again["new"], again["events"]) == (0, 0) and len(emitted) == first["events"]
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.anomaly)).scalar() == len(
            stored)
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["anomaly-findings"])))
    assert arts


def test_an_overlapping_window_announces_only_its_new_findings(pg_engine, warehouse,
                                                               emitted):
    tables, block = warehouse
    syn = synthetic_year(n_locations=1, seed=22, timezone="UTC")
    with pg_engine.begin() as conn:
        conn.execute(insert(tables.temperature_hourly),
                     syn.frame.assign(updated_at=datetime.now(UTC)).to_dict("records"))
    a = detect_anomalies(start=datetime(2024, 5, 1), end=datetime(2024, 5, 20),
                         target_db=block, timezone="UTC")
    b = detect_anomalies(start=datetime(2024, 5, 10), end=datetime(2024, 6, 1),
                         target_db=block, timezone="UTC")
    with pg_engine.connect() as conn:
        keys = conn.execute(select(tables.anomaly.c.kind, tables.anomaly.c.loc_id,
                                   tables.anomaly.c.measure,
                                   tables.anomaly.c.hour_start)).all()
    assert len(keys) == len(set(keys)) == a["new"] + b["new"] == len(emitted)
    assert b["new"] < b["findings"]  # the overlap was found again, not announced again


def test_a_window_without_hourly_rows_is_idle(warehouse):
    _, block = warehouse
    state = detect_anomalies(start=datetime(2030, 1, 1), end=datetime(2030, 1, 2),
                             target_db=block, timezone="UTC", return_state=True)
    assert state.name == "Idle" and state.result()["hourly_rows"] == 0


def test_finding_rows_round_trip(pg_engine, warehouse):
    tables, _ = warehouse
    f = Finding("gap", "L1", "*", datetime(2024, 1, 1, 5, tzinfo=UTC), 3, 3.0, {"ymd": "x"})
    from shopfloor.anomaly.store import insert_findings

    with pg_engine.begin() as conn:
        assert insert_findings(conn, tables, [f, f], "run", datetime.now(UTC)) == [f]
        assert insert_findings(conn, tables, [f], "run", datetime.now(UTC)) == []


def test_a_spike_on_any_tag_is_found_with_its_settings_and_announced_once(
        pg_engine, warehouse, emitted):
    """Tags' hourly rows (tag_hourly, as the hourly flow's roll-up writes them): a planted
    spike on a pressure tag is found and stored under the tag; its unit's settings can
    silence it; a rerun announces nothing twice."""
    tables, block = warehouse
    device = f"plc-{uuid.uuid4().hex[:8]}"
    infos = [TagInfo(name, device, "L900", unit, "float32", None, f"holding:{i}")
             for i, (name, unit) in enumerate([("line_pressure", "bar"), ("motor_current", "A")])]
    with pg_engine.begin() as conn:
        conn.execute(tables.tag_hourly.delete())
        ids = register_tags(conn, tables.tags, infos)
        rows = []
        start = datetime(2024, 1, 1, tzinfo=UTC)
        for (_, name), tag_id in ids.items():
            rng = np.random.default_rng(tag_id)
            level = 6.0 if name == "line_pressure" else 12.0
            for h in range(40 * 24):
                v = float(level + 3 * np.sin(2 * np.pi * h / 24) + rng.normal(0, 0.02))
                v += 4.0 if (name, h) == ("line_pressure", 37 * 24 + 5) else 0.0
                rows.append({"tag_id": tag_id, "period_start": start + timedelta(hours=h),
                             "sample_count": 3600, "good_count": 3600, "value_count": 3600,
                             "value_sum": v * 3600, "value_min": v, "value_max": v,
                             "value_avg": v, "first_ts": None, "first_value": v,
                             "last_ts": None, "last_value": v,
                             "updated_at": datetime.now(UTC)})
        conn.execute(insert(tables.tag_hourly), rows)
    kw = {"start": datetime(2024, 2, 5), "end": datetime(2024, 2, 10), "target_db": block,
          "timezone": "UTC", "series": "tags"}
    quiet = detect_anomalies(**kw, tag_settings={"unit:bar": {"spike_threshold": 1000,
                                                              "deviation_threshold": 1000}})
    assert quiet["findings"] == 0
    first = detect_anomalies(**kw)
    pressure = ids[(device, "line_pressure")]
    with pg_engine.connect() as conn:
        stored = conn.execute(select(tables.anomaly)).mappings().all()
    assert sorted((r["kind"], r["loc_id"], r["measure"]) for r in stored) == [
        ("deviation", "L900", f"tag:{pressure}"), ("spike", "L900", f"tag:{pressure}")]
    assert first["new"] == first["events"] == len(emitted) == 2
    assert {e["shopfloor.tag"] for e in emitted} == {"line_pressure"}
    again = detect_anomalies(**kw)
    assert (again["findings"], again["new"], again["events"]) == (2, 0, 0)
