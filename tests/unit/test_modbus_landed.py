"""The landed line format: every sample with its verdict, reasons and rule version."""

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.capture import CaptureStats
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.landed import landed_batch, parse_object, rewritten_object
from shopfloor.modbus.readings import RULES_VERSION, Reading, readings_batch
from shopfloor.modbus.sink import ReadingSink
from shopfloor.storage import StorageLocation
from tests.unit.test_modbus_validation import CASES, GOOD, TAGS

pytestmark = pytest.mark.unit
CFG = DeviceConfig("plc-1", "L1", TAGS, district="D9")
T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)


def _land(tmp_path: Path, cases: dict[str, dict]) -> tuple[CaptureStats, dict[str, bytes]]:
    readings = [Reading(T0 + timedelta(seconds=i),
                        {k: v for k, v in {**GOOD, **c}.items() if v is not None})
                for i, c in enumerate(cases.values())]
    stats = CaptureStats("plc-1")
    store = StorageLocation("local", str(tmp_path))
    ReadingSink(CFG, stats, "run-1", storage=store)(readings_batch(CFG, readings))
    return stats, {p.relative_to(tmp_path).as_posix(): p.read_bytes()
                   for p in tmp_path.rglob("*.json")}


def test_every_sample_lands_with_its_verdict_and_reasons(tmp_path: Path):
    stats, objects = _land(tmp_path, CASES)
    assert stats.rows_valid == 2 and stats.rows_quarantined == 6 and stats.objects_landed == 1
    (key, body), = objects.items()
    assert key == f"dstrct_code=D9/plc-1/2026010109/{int(T0.timestamp() * 1000)}.json"
    lines = [json.loads(x) for x in body.decode().splitlines()]
    by_case = dict(zip(CASES, lines, strict=True))
    assert len(lines) == len(CASES)
    assert all(r["rules_version"] == RULES_VERSION for r in lines)
    assert [r["verdict"] for r in lines].count("valid") == 2
    assert by_case["good"]["verdict"] == "valid" and by_case["good"]["reasons"] == []
    nan = by_case["nan"]
    assert nan["verdict"] == "rejected" and nan["temperature"] is None  # NaN is null
    assert {"column": "temperature", "check": "finite_number", "value": None} in nan["reasons"]
    above = by_case["above_max"]
    assert above["humidity"] == pytest.approx(100.1)
    assert [(r["column"], r["check"][:8]) for r in above["reasons"]] == [("humidity", "in_range")]
    assert above["reasons"][0]["value"] == pytest.approx(100.1)
    # a failed read: the tag is null and the reason says missing (not a NaN complaint)
    assert by_case["missing"]["humidity"] is None
    assert by_case["missing"]["reasons"] == [{"column": "humidity", "check": "missing",
                                               "value": None}]
    assert "NaN" not in body.decode() and "Infinity" not in body.decode()


def test_a_retry_lands_the_same_key_and_bytes(tmp_path: Path):
    _, first = _land(tmp_path / "a", CASES)
    _, again = _land(tmp_path / "b", CASES)
    assert first == again


def test_landed_lines_read_back_into_the_same_batch_and_bytes(tmp_path: Path):
    _, objects = _land(tmp_path, CASES)
    (key, body), = objects.items()
    lines = parse_object(body, key)
    assert [ln.line for ln in lines] == list(range(1, len(CASES) + 1))
    batch = landed_batch(CFG, lines)
    sink = ReadingSink(CFG, CaptureStats("plc-1"), "r")
    judged = sink.judge(batch)
    assert int(judged.keep.sum()) == 2
    assert batch.missing[list(CASES).index("missing")] == "h"
    assert math.isnan(batch.frame()["temperature"][list(CASES).index("nan")])
    # judged again under the same rules, the object is rewritten byte for byte
    assert rewritten_object(lines, judged.landed(batch), RULES_VERSION) == body


def test_a_line_landed_without_a_verdict_gets_one_on_rewrite():
    old = b'{"capture_dt": "2026-01-01T09:00:00Z", "heartbeat": 1, "temperature": 99.0}\n'
    lines = parse_object(old, "k")
    out = json.loads(rewritten_object(lines, [[{"column": "temperature", "check": "x",
                                                "value": 99.0}]], 7))
    assert (out["verdict"], out["rules_version"], out["temperature"]) == ("rejected", 7, 99.0)


def test_a_line_that_is_not_a_json_object_is_named_by_key_and_line():
    with pytest.raises(ShopfloorError, match="k.json line 2"):
        parse_object(b'{"a": 1}\n[1]\n', "k.json")


def _good_batch(seconds: range):
    return readings_batch(CFG, [Reading(T0 + timedelta(seconds=s), dict(GOOD)) for s in seconds])


def _lake_lines(tmp_path: Path) -> dict[str, list[int]]:
    return {p.name: [json.loads(x)["heartbeat"] for x in p.read_text().splitlines()]
            for p in sorted(tmp_path.rglob("*.json"))}


def test_an_object_already_landed_is_never_rewritten_only_its_missing_slots_land(
        tmp_path: Path):
    """Two runs capturing one device at once (one outlived its killed worker) batch the
    same first slot with other lengths: the object landed first may be compacted already,
    so the second run lands only the slots it lacks, under their own name, once."""
    store = StorageLocation("local", str(tmp_path))
    first = ReadingSink(CFG, CaptureStats("plc-1"), "run-a", storage=store)
    second = ReadingSink(CFG, CaptureStats("plc-1"), "run-b", storage=store)
    first(_good_batch(range(0, 4)))
    compacted = _lake_lines(tmp_path)
    second(_good_batch(range(0, 6)))  # slots 0..3 again, and 4, 5
    second(_good_batch(range(0, 6)))  # its replay after a crash: nothing more
    first(_good_batch(range(0, 4)))   # the first run's replay: nothing more
    ms = [int((T0 + timedelta(seconds=s)).timestamp() * 1000) for s in range(6)]
    lake = _lake_lines(tmp_path)
    assert lake == {**compacted, f"{ms[4]}.json": ms[4:]}
    assert sorted(b for beats in lake.values() for b in beats) == ms  # each slot once
    assert second.stats.objects_landed == 1 and first.stats.objects_landed == 1


def test_unlanded_rest_is_none_for_a_replay_and_names_the_rest_by_its_first_slot():
    from shopfloor.modbus.landed import unlanded_rest

    def body(*beats: int) -> bytes:
        return b"".join(json.dumps({"heartbeat": b}).encode() + b"\n" for b in beats)

    assert unlanded_rest("d/h/1.json", body(1, 2), body(1, 2, 3)) is None
    assert unlanded_rest("d/h/1.json", body(1, 2, 3, 5), body(1, 2)) == (
        "d/h/3.json", body(3, 5))
