"""Samples through the buffer encoding, and how forwarders cut landing batches."""

import math
from datetime import UTC, datetime

import pytest

from shopfloor.buffer.store import Record
from shopfloor.modbus.buffered import (
    _segments,
    backlog_message,
    config_from_json,
    config_json,
    decode,
    encode,
    group_of,
)
from shopfloor.modbus.client import DeviceConfig, device_plan
from shopfloor.modbus.readings import RawSample, Reading, decode_batch, readings_batch
from shopfloor.modbus.tags import TagSpec

TAGS = (TagSpec(name="t", column="temperature", address=0, data_type="float32"),
        TagSpec(name="h", column="humidity", address=2),
        TagSpec(name="s", column="serial", address=3, data_type="string", length=2))
CFG = DeviceConfig(name="d", loc_id="L", tags=TAGS, district="D1")


def _records(plan, samples: list[RawSample]) -> list[Record]:
    return [Record(i, "d", round(s.capture_dt.timestamp() * 1000), 0, "r",
                   encode(plan, s.payloads), None) for i, s in enumerate(samples)]


def test_a_sample_decodes_from_the_buffer_as_capture_decodes_it():
    cfg = DeviceConfig(name="d", loc_id="L", tags=TAGS + (
        TagSpec(name="c", column="coil", register_type="coil", address=0, data_type="bool"),))
    plan = device_plan(cfg)
    words = {i: ([True] if r.register_type == "coil" else list(range(7, 7 + r.count)))
             for i, r in enumerate(plan)}
    samples = [RawSample(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), words),
               RawSample(datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC), {}),  # nothing answered
               RawSample(datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC), {0: words[0]})]
    back = decode(cfg, plan, _records(plan, samples))
    direct = decode_batch(cfg, device_plan(cfg), samples)
    assert back.capture_dts == direct.capture_dts and back.missing == direct.missing
    assert back.matrix.tobytes() == direct.matrix.tobytes()  # NaN and all, bit for bit
    assert {c: v.tolist() for c, v in back.text.items()} == {
        c: v.tolist() for c, v in direct.text.items()}


def test_a_record_that_does_not_fit_the_map_is_refused():
    plan = device_plan(CFG)
    body = encode(plan, {0: [1] * plan[0].count})
    with pytest.raises(ValueError, match="does not fit"):
        decode(CFG, plan, [Record(1, "d", 0, 0, "r", body + b"\0\0", None)])


def test_the_device_config_round_trips():
    assert config_from_json(config_json(CFG)) == CFG


def test_landing_groups_are_the_direct_captures_grid_batches():
    group = group_of(1.0, 3600)  # 60 one-second slots a batch, on the minute grid
    assert group(60_000, 0) == group(119_000, 59) != group(120_000, 60)
    assert group_of(0.0, 10)(0, 9) == 0  # no grid: by sample count


def test_segments_split_on_run_group_or_configuration():
    recs = [Record(i, "d", i, g, r, b"", None, c) for i, (g, r, c) in enumerate(
        [(1, "a", 1), (1, "a", 1), (2, "a", 1), (2, "b", 1), (2, "b", 2)])]
    assert [[r.seq for r in s] for s in _segments(recs)] == [[0, 1], [2], [3], [4]]
    # the warehouse takes any group at once, one configuration at a time
    assert [[r.seq for r in s] for s in _segments(recs, landing=False)] == [[0, 1, 2, 3], [4]]


def test_the_runs_message_names_each_sinks_backlog():
    assert backlog_message(36, {"warehouse:db": 2, "landing:raw": 36},
                           {"warehouse:db": 34, "landing:raw": 0}) == (
        "buffered 36, forwarded 2 to warehouse:db, forwarded 36 to landing:raw, "
        "backlog 34 for warehouse:db")


def test_the_copy_csv_of_a_batch_holds_the_same_rows_as_raw_rows():
    import csv
    import io

    cfg = DeviceConfig(name='d"1', loc_id="L,1", tags=TAGS[:2])
    batch = readings_batch(cfg, [
        Reading(datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), {"t": 0.1 + 0.2, "h": 40}),
        Reading(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), {"t": math.inf, "h": 41})])
    now = datetime(2026, 1, 2, tzinfo=UTC)
    columns, text = batch.raw_csv(now)
    parsed = list(csv.reader(io.StringIO(text)))
    rows = batch.raw_rows(now)
    assert columns == list(rows[0])
    for line, row in zip(parsed, rows, strict=True):
        got = dict(zip(columns, line, strict=True))
        assert got["loc_id"] == row["loc_id"] and got["device"] == row["device"]
        assert datetime.fromisoformat(got["capture_dt"]).replace(tzinfo=UTC) == row["capture_dt"]
        assert datetime.fromisoformat(got["ingested_at"]).replace(tzinfo=UTC) == now
        for c in ("temperature", "humidity", "pcv_temperature"):
            assert (float(got[c]) if got[c] else None) == row[c]


def test_a_configuration_buffered_under_the_seeds_spelling_still_decodes():
    text = config_json(CFG).replace('"district"', '"dstrct_code"')
    assert '"dstrct_code"' in text
    assert config_from_json(text) == CFG
