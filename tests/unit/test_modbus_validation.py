"""Validation of readings: the vectorised pre-check and the pandera schema agree."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from shopfloor.modbus.capture import CaptureStats
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.readings import Reading, reading_schema, readings_batch
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec
from shopfloor.quality import split_valid

TAGS = (
    TagSpec(name="t", column="temperature", address=0, data_type="float32", min_value=-20,
            max_value=80),
    TagSpec(name="h", column="humidity", address=2, data_type="uint16", scale=0.1, max_value=100),
    TagSpec(name="p", column="pcv_temperature", address=3, data_type="int16", min_value=0),
    TagSpec(name="free", column="free", address=4, data_type="float64"),
    TagSpec(name="label", column="label", address=8, data_type="string", length=2),
)
CFG = DeviceConfig("dev", "L1", TAGS)
GOOD = {"t": 21.5, "h": 55.0, "p": 30.0, "free": -1e9, "label": "ok"}
CASES = {
    "good": {},
    "nan": {"t": math.nan},
    "inf": {"free": math.inf},
    "-inf": {"p": -math.inf},
    "below_min": {"t": -20.5},
    "above_max": {"h": 100.1},
    "at_bounds": {"t": 80.0, "h": 100.0, "p": 0.0},
    "missing": {"h": None},
}


def _readings() -> list[Reading]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i, change in enumerate(CASES.values()):
        values = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
        out.append(Reading(t0 + timedelta(seconds=i), values))
    return out


def test_pre_check_flags_exactly_the_rows_pandera_rejects():
    batch = readings_batch(CFG, _readings())
    frame = batch.frame()
    by_pandera = split_valid(frame, reading_schema(TAGS))
    rejected = {q.record["capture_dt"] for q in by_pandera.quarantined}
    flagged = {frame.loc[i, "capture_dt"].isoformat() for i in frame.index[batch.suspect()]}
    assert flagged == rejected
    assert len(rejected) == 6  # all but "good" and "at_bounds"


@pytest.mark.parametrize("fast", [True, False])
def test_sink_outcome_is_the_same_with_and_without_the_pre_check(fast: bool):
    stats = CaptureStats("dev")
    batch = readings_batch(CFG, _readings())
    valid, quarantined = ReadingSink(CFG, stats, "run", fast=fast).validate(batch)
    assert len(valid) == 2 and len(quarantined) == 6
    # the valid rows are exactly "good" and "at_bounds", values as read
    assert valid.capture_dts == [batch.capture_dts[0], batch.capture_dts[6]]
    assert valid.frame()["temperature"].tolist() == [21.5, 80.0]
    reasons = {(r.column, r.check) for q in quarantined for r in q.reasons}
    assert ("temperature", "finite_number") in reasons
    assert "missing_tags" in {c for c, _ in reasons}
    assert any(c == "humidity" and ch.startswith("in_range") for c, ch in reasons)


def test_batch_decoding_equals_sample_by_sample_decoding_with_a_failed_read():
    import random

    import pandas as pd

    from shopfloor.modbus.client import device_plan
    from shopfloor.modbus.decoding import RequestDecoder
    from shopfloor.modbus.readings import RawSample, decode_batch

    tags = TAGS + (
        TagSpec(name="w", column="w", address=20, data_type="int32", byte_order="CDAB",
                scale=0.5),
        TagSpec(name="b", column="b", address=22, data_type="bit", bit=2),
        TagSpec(name="c", column="c", register_type="coil", address=1, data_type="bool"),
    )
    cfg = DeviceConfig("dev", "L1", tags, max_gap_registers=2)
    plan = device_plan(cfg)
    assert len(plan) == 3  # coils, holding 0-10, holding 20-22
    rng = random.Random(3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    samples = []
    for k in range(6):
        payloads = {i: ([rng.random() < 0.5 for _ in range(r.count)] if i == 0 else
                        [rng.randrange(65536) for _ in range(r.count)])
                    for i, r in enumerate(plan)}
        if k == 4:
            del payloads[2]  # this read failed in sample 4
        samples.append(RawSample(t0 + timedelta(seconds=k), payloads))
    batch = decode_batch(cfg, plan, samples).frame()
    decoders = [RequestDecoder(r.tags, r.address, r.count) for r in plan]
    one_by_one = readings_batch(cfg, [
        Reading(s.capture_dt, {n: v for i, p in s.payloads.items()
                               for n, v in decoders[i](p).items()})
        for s in samples]).frame()
    pd.testing.assert_frame_equal(batch, one_by_one, check_dtype=False, check_like=True)
    assert batch.loc[4, "missing_tags"] == "w,b" and math.isnan(batch.loc[4, "w"])


def test_landed_objects_are_per_hour_with_deterministic_names():
    from shopfloor.modbus.readings import json_objects

    cfg = DeviceConfig("plc-1", "L1", TAGS, district="D9")
    t0 = datetime(2026, 1, 1, 9, 59, 59, tzinfo=UTC)
    rows = [Reading(t0 + timedelta(seconds=k), dict(GOOD)) for k in range(2)]
    batch = readings_batch(cfg, rows)
    objects = json_objects(batch, "1767261599000")
    # the district first, hive style: the key registry reads it without a parameter
    assert sorted(objects) == ["dstrct_code=D9/plc-1/2026010109/1767261599000.json",
                               "dstrct_code=D9/plc-1/2026010110/1767261599000.json"]
    assert json_objects(batch, "1767261599000") == objects  # a retry: the same bytes
    from shopfloor.compaction.keys import district_from_key

    assert {district_from_key(k) for k in objects} == {"D9"}
    import json

    (line,) = objects["dstrct_code=D9/plc-1/2026010110/1767261599000.json"].decode().splitlines()
    record = json.loads(line)
    assert record["heartbeat"] == int(datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp() * 1000)
    assert (record["dstrct_code"], record["device"], record["loc_id"]) == ("D9", "plc-1", "L1")
    assert record["temperature"] == 21.5 and record["label"] == "ok"
