"""The modbus-capture flow against a real pymodbus server and PostgreSQL."""

import json
from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError
from sqlalchemy import Engine, func, select

from flows.modbus_capture import MAX_DEVICES
from shopfloor.db.schema import get_tables
from shopfloor.errors import ShopfloorError


def _rows(engine: Engine, loc_id: str) -> list[dict]:
    t = get_tables().temperature_raw
    with engine.connect() as conn:
        stmt = select(t).where(t.c.loc_id == loc_id).order_by(t.c.capture_dt)
        return [dict(r._mapping) for r in conn.execute(stmt)]


def _quarantined(engine: Engine, device: str, after_id: int = 0) -> list[dict]:
    q = get_tables().quarantine
    with engine.connect() as conn:
        rows = conn.execute(select(q).where(q.c.source == f"modbus:{device}",
                                            q.c.id > after_id).order_by(q.c.id)).all()
    return [{"record": json.loads(r.record), "reasons": json.loads(r.reasons)} for r in rows]


def test_one_faulty_device_does_not_stop_the_others(device_blocks, target_db, pg_engine,
                                                    raw_logs: Path):
    from flows.modbus_capture import modbus_capture

    names = ["mb-ok-1", "mb-ok-2", "mb-bad-refuse", "mb-bad-nan", "mb-bad-exception",
             "mb-bad-out-of-range"]
    # other tests of this worker's session capture the same devices into the same
    # database: count only what this run adds
    before_rows = len(_rows(pg_engine, "LOC-ok-1"))
    q = get_tables().quarantine
    with pg_engine.connect() as conn:
        last_id = conn.scalar(select(func.coalesce(func.max(q.c.id), 0)))
    summary = modbus_capture(names, samples=3, interval_seconds=1.0, target_db=target_db,
                             land_json=True, raw_logs="modbus-test-raw")
    by_device = {s["device"]: s for s in summary}
    # The slots each device took: a loaded machine may miss one of them (counted as
    # missed, never as read); every count below is checked against what was taken.
    taken = {d: 3 - s["samples_missed"] - s["samples_skipped"] for d, s in by_device.items()}
    assert all(n >= 2 for n in taken.values()), by_device

    for ok in ("mb-ok-1", "mb-ok-2"):
        assert by_device[ok]["samples_ok"] == taken[ok] and by_device[ok]["samples_failed"] == 0
        assert by_device[ok]["requests_planned"] == 3  # coil 0, holding 0-2, input 10
        assert by_device[ok]["rows_written"] == taken[ok]
    rows = _rows(pg_engine, "LOC-ok-1")[before_rows:]
    assert len(rows) == taken["mb-ok-1"]
    times = [r["capture_dt"] for r in rows]
    steps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
    assert steps <= {1.0, 2.0}  # on schedule: start + k * interval
    assert all(-20 <= r["temperature"] <= 80 and 0 <= r["humidity"] <= 100 for r in rows)
    assert all(r["device"] == "mb-ok-1" and r["pcv_temperature"] is not None for r in rows)

    refused = by_device["mb-bad-refuse"]
    assert (refused["samples_ok"], refused["samples_failed"], refused["rows_written"]) == (
        0, taken["mb-bad-refuse"], 0)
    assert "refused" in refused["last_error"]
    exc = by_device["mb-bad-exception"]
    assert exc["samples_failed"] == taken["mb-bad-exception"]
    assert "modbus exception 4" in exc["last_error"]
    assert exc["requests_sent"] > exc["requests_planned"] * taken["mb-bad-exception"] - 1

    nan = _quarantined(pg_engine, "mb-bad-nan", last_id)
    assert len(nan) == taken["mb-bad-nan"] == by_device["mb-bad-nan"]["rows_quarantined"]
    assert {"column": "temperature", "check": "finite_number"} in [
        {k: r[k] for k in ("column", "check")} for r in nan[0]["reasons"]]
    oor = _quarantined(pg_engine, "mb-bad-out-of-range", last_id)
    assert len(oor) == taken["mb-bad-out-of-range"]
    assert oor[0]["reasons"][0]["column"] == "temperature"
    assert oor[0]["record"]["temperature"] > 80
    assert _rows(pg_engine, "LOC-bad-nan") == []  # the NaN device wrote nothing to temperature_raw

    landed = sorted(raw_logs.rglob("*.json"))
    # raw is what arrived: the rejected readings of the faulty devices land too
    assert {p.relative_to(raw_logs).parts[:2] for p in landed} == {
        ("dstrct_code=D7", d) for d in ("mb-ok-1", "mb-ok-2", "mb-bad-nan",
                                        "mb-bad-out-of-range")}
    records = [json.loads(line) for p in landed for line in p.read_text().splitlines()]
    n_valid = taken["mb-ok-1"] + taken["mb-ok-2"]
    n_rejected = taken["mb-bad-nan"] + taken["mb-bad-out-of-range"]
    assert len(records) == n_valid + n_rejected
    by_verdict = {v: [r for r in records if r["verdict"] == v] for v in ("valid", "rejected")}
    assert {r["device"] for r in by_verdict["valid"]} == {"mb-ok-1", "mb-ok-2"}
    assert len(by_verdict["valid"]) == n_valid and len(by_verdict["rejected"]) == n_rejected
    hot = [r for r in by_verdict["rejected"] if r["device"] == "mb-bad-out-of-range"]
    assert len(hot) == taken["mb-bad-out-of-range"] and all(r["temperature"] > 80 for r in hot)
    assert all(r["reasons"][0]["column"] == "temperature"
               and r["reasons"][0]["value"] == r["temperature"] for r in hot)
    # the same readings, judged the same, are in the quarantine
    assert sorted(r["temperature"] for r in hot) == sorted(
        q["record"]["temperature"] for q in oor)
    nan_lines = [r for r in by_verdict["rejected"] if r["device"] == "mb-bad-nan"]
    assert all(r["temperature"] is None and {"column": "temperature", "check": "finite_number",
                                             "value": None} in r["reasons"] for r in nan_lines)
    first = by_verdict["valid"][0]
    assert isinstance(first["heartbeat"], int) and first["dstrct_code"] == "D7"
    hour_folder = landed[0].relative_to(raw_logs).parts[2]
    assert len(hour_folder) == 10 and hour_folder.isdigit()
    # named by the batch's first slot: epoch ms, the first heartbeat of the object
    assert int(landed[0].stem) == min(
        json.loads(ln)["heartbeat"] for ln in landed[0].read_text().splitlines())


def test_a_silent_device_times_out_without_delaying_the_schedule_of_others(
        device_blocks, target_db, pg_engine):
    from flows.modbus_capture import modbus_capture

    summary = modbus_capture(["mb-ok-2", "mb-bad-no-answer"], samples=3, interval_seconds=1.0,
                             target_db=target_db)
    ok, silent = summary
    assert (ok["samples_ok"], ok["samples_missed"], ok["rows_written"]) == (3, 0, 3)
    assert silent["samples_ok"] == 0 and silent["samples_failed"] + silent["samples_missed"] == 3
    assert "no answer" in silent["last_error"]
    times = [r["capture_dt"] for r in _rows(pg_engine, "LOC-ok-2")][-3:]
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)} == {1.0}


def test_rtu_framing_over_tcp(device_blocks, target_db, pg_engine):
    from flows.modbus_capture import modbus_capture

    summary = modbus_capture(["mb-rtu"], samples=1, target_db=target_db)
    assert summary[0]["samples_ok"] == 1 and summary[0]["rows_written"] == 1
    (row,) = _rows(pg_engine, "LOC-rtu")
    assert -20 <= row["temperature"] <= 80


@pytest.mark.parametrize("kwargs, message", [
    ({"devices": ["mb-ok-1"], "samples": 2, "interval_seconds": 0}, "must be > 0"),
    ({"devices": ["mb-ok-1", "mb-ok-1"]}, "listed twice"),
    ({"devices": ["no-such-device"]}, "not found"),
    ({"devices": ["mb-ok-1"], "target_db": "no-such-db"}, "not found"),
])
def test_bad_parameters_fail_before_polling(device_blocks, target_db, kwargs, message):
    from flows.modbus_capture import modbus_capture

    with pytest.raises(ShopfloorError, match=message):
        modbus_capture(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"devices": []}, "devices"),
    ({"devices": [f"d-{i}" for i in range(MAX_DEVICES + 1)]}, "devices"),
    ({"devices": ["Line1_PLC"]}, "devices.0"),
    ({"devices": ["mb-ok-1"], "samples": 0}, "samples"),
    ({"devices": ["mb-ok-1"], "interval_seconds": -1.0}, "interval_seconds"),
    ({"devices": ["mb-ok-1"], "interval_seconds": float("nan")}, "interval_seconds"),
])
def test_bounds_are_in_the_parameter_schema(device_blocks, kwargs, field):
    # The bounds live in the flow signature, so the Prefect server refuses such a run
    # before creating it; a plain Python call gets Prefect's parameter check.
    from flows.modbus_capture import modbus_capture

    with pytest.raises(ParameterTypeError, match=field):
        modbus_capture(**kwargs)


def test_retried_sample_overwrites_instead_of_duplicating(simulator, pg_engine, target_db):
    from shopfloor.modbus.capture import CaptureStats, capture_device
    from shopfloor.modbus.client import DeviceConfig
    from shopfloor.modbus.sink import ReadingSink

    dev = simulator["ok-2"]
    cfg = DeviceConfig(name="retry-dev", loc_id="RETRY", tags=tuple(dev.tags), port=dev.port)
    anchor = 1_700_000_000.0  # a fixed sample time, as a retried sample has
    for _ in range(2):
        stats = CaptureStats(cfg.name)
        sink = ReadingSink(cfg, stats, "run-x", engine=pg_engine, tables=get_tables())
        capture_device(cfg, 1, 0.0, anchor, sink, stats=stats)
        assert stats.rows_written == 1
    t = get_tables().temperature_raw
    with pg_engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(t.c.loc_id == "RETRY")) == 1


def test_landed_json_goes_to_s3_in_the_layout_compaction_reads(device_blocks, s3_endpoint,
                                                               s3_bucket, prefect_harness):
    import boto3
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from flows.modbus_capture import modbus_capture

    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    S3Bucket(bucket_name=s3_bucket, bucket_folder="raw", credentials=creds).save(
        "modbus-test-s3", overwrite=True)
    summary = modbus_capture(["mb-ok-1"], samples=2, interval_seconds=0.5, write_raw=False,
                             land_json=True, raw_logs="modbus-test-s3")
    assert summary[0]["objects_landed"] >= 1 and summary[0]["rows_valid"] == 2
    assert summary[0]["rows_written"] == 0  # write_raw=False
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert all(k.startswith("raw/dstrct_code=D7/mb-ok-1/") and k.endswith(".json")
               for k in keys)
    body = b"".join(s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read() for k in keys)
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == 2 and lines[1]["heartbeat"] - lines[0]["heartbeat"] == 500
    assert {ln["dstrct_code"] for ln in lines} == {"D7"} and lines[0]["loc_id"] == "LOC-ok-1"
