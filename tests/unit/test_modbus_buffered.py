"""Samples through the buffer encoding, and how forwarders cut landing batches."""

import math
from datetime import UTC, datetime

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
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.readings import Reading, readings_batch
from shopfloor.modbus.tags import TagSpec

TAGS = (TagSpec(name="t", column="temperature", address=0, data_type="float32"),
        TagSpec(name="h", column="humidity", address=2),
        TagSpec(name="s", column="serial", address=3, data_type="string", length=2))
CFG = DeviceConfig(name="d", loc_id="L", tags=TAGS, dstrct_code="D1")


def test_a_sample_comes_back_from_the_buffer_as_it_went_in():
    readings = [Reading(datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC), v) for i, v in enumerate(
        [{"t": 21.5, "h": 40, "s": "AB"}, {"t": math.nan, "h": 41, "s": None}, {"h": 42}])]
    batch = readings_batch(CFG, readings)
    records = [Record(i, "d", round(dt.timestamp() * 1000), 0, "r", *encode(batch, i))
               for i, dt in enumerate(batch.capture_dts)]
    back = decode(CFG, records)
    assert back.capture_dts == batch.capture_dts and back.missing == batch.missing
    assert back.numeric == batch.numeric
    assert back.matrix.tobytes() == batch.matrix.tobytes()  # NaN and all, bit for bit
    assert back.text["serial"].tolist() == batch.text["serial"].tolist()
    assert records[0].extra is not None and '"m": ""' in records[0].extra


def test_a_clean_numeric_sample_needs_no_json():
    cfg = DeviceConfig(name="d", loc_id="L", tags=TAGS[:2])
    batch = readings_batch(cfg, [Reading(datetime(2026, 1, 1, tzinfo=UTC), {"t": 1.0, "h": 2})])
    body, extra = encode(batch, 0)
    assert extra is None and len(body) == 16


def test_the_device_config_round_trips():
    assert config_from_json(config_json(CFG)) == CFG


def test_landing_groups_are_the_direct_captures_grid_batches():
    group = group_of(1.0, 3600)  # 60 one-second slots a batch, on the minute grid
    assert group(60_000, 0) == group(119_000, 59) != group(120_000, 60)
    assert group_of(0.0, 10)(0, 9) == 0  # no grid: by sample count


def test_segments_split_on_run_or_group():
    recs = [Record(i, "d", i, g, r, b"", None)
            for i, (g, r) in enumerate([(1, "a"), (1, "a"), (2, "a"), (2, "b")])]
    assert [[r.seq for r in s] for s in _segments(recs)] == [[0, 1], [2], [3]]


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
