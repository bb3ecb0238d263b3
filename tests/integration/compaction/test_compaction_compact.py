"""compact_claim on a local folder and on moto's S3: units, malformed objects, retries."""

import json
import tempfile
from datetime import datetime, timedelta

import pytest

from shopfloor.compaction.claims import ClaimedKey
from shopfloor.compaction.compact import CompactionSpec, compact_claim
from shopfloor.compaction.duck import connect
from shopfloor.compaction.layout import ClaimLayout
from shopfloor.storage import StorageLocation

from .helpers import HEARTBEAT_BASE_S, heartbeat, lake_rows, ndjson, records

TARGET = "datalog_v2"


@pytest.fixture(params=["local", "s3"])
def storage(request) -> tuple[StorageLocation, StorageLocation]:
    return request.getfixturevalue(f"{request.param}_storage")


def _claimed(raw: StorageLocation, previous: str | None = None) -> list[ClaimedKey]:
    return [ClaimedKey(i, o.key, o.size, previous) for i, o in enumerate(raw.list_objects())]


def _compact(raw, lake, token, claimed, distrik="BRCB"):
    spec = CompactionSpec(raw, lake, TARGET, distrik, 8, "512MB")
    return compact_claim(spec, ClaimLayout(lake, TARGET, token), claimed)


def test_heartbeats_in_any_unit_give_the_same_wita_time(storage, write_objects):
    raw, lake = storage
    write_objects(raw, {f"plc/{unit}.json": ndjson(records(0, 3, unit)) for unit in
                        ("s", "ms", "us", "ns")})
    result = _compact(raw, lake, "run-units", _claimed(raw))
    assert sorted(result.succeeded) == [f"plc/{u}.json" for u in ("ms", "ns", "s", "us")]
    rows = lake_rows(lake)
    assert len(rows) == 12
    expected = {datetime(2025, 11, 20, 8, 53, 20) + timedelta(seconds=i) for i in range(3)}
    assert {r[4] for r in rows} == expected
    assert {(r[2], r[3]) for r in rows} == {("2025-11-20", "BRCB")}


def test_arrays_lines_and_record_district_are_unioned_by_name(storage, write_objects):
    raw, lake = storage
    array = json.dumps([{"heartbeat": heartbeat(HEARTBEAT_BASE_S, "s"), "seq": 0,
                         "humidity": 55.5, "dstrct_code": "SATU"}]).encode()
    write_objects(raw, {"a/array.json": array, "a/lines.json": ndjson(records(1, 2))})
    result = _compact(raw, lake, "run-union", _claimed(raw))
    assert result.rows_out == 3 and not result.quarantined
    assert {(r[0], r[3]) for r in lake_rows(lake)} == {
        ("a/array.json", "SATU"), ("a/lines.json", "BRCB")}


def test_malformed_objects_are_isolated_and_good_ones_go_through(storage, write_objects):
    raw, lake = storage
    good_with_bad_records = records(2, 4) + [
        {"seq": 90, "obj": 2}, {"heartbeat": "soon", "seq": 91}, {"heartbeat": -5, "seq": 92}]
    write_objects(raw, {
        "d/good.json": ndjson(records(1, 5)),
        "d/mixed.json": ndjson(good_with_bad_records),
        "d/invalid.json": b'{"heartbeat": 1763600000, "seq": 1}\n{"heartbeat": ',
        "d/empty.json": b"",
        "d/blank.json": b"\n\n",
        "d/no_heartbeat.json": ndjson([{"seq": 1, "temperature": 3.0}]),
        "d/text_heartbeat.json": ndjson([{"heartbeat": "yesterday", "seq": 1}]),
        "d/latin1.json": '{"heartbeat": 1763600000, "site": "Bénoa"}\n'.encode("latin-1"),
        "d/not_object.json": b'{"heartbeat": 1763600000, "seq": 1}\n42\n',
    })
    claimed = _claimed(raw) + [ClaimedKey(99, "d/deleted.json", 10, None)]
    result = _compact(raw, lake, "run-bad", claimed)
    assert sorted(result.succeeded) == ["d/good.json", "d/mixed.json"]
    q = result.quarantined
    assert set(q) == {"d/invalid.json", "d/empty.json", "d/blank.json", "d/no_heartbeat.json",
                      "d/text_heartbeat.json", "d/latin1.json", "d/not_object.json",
                      "d/deleted.json"}
    assert q["d/deleted.json"].startswith("object not found")
    assert "Malformed JSON" in q["d/invalid.json"]
    assert q["d/empty.json"].startswith("empty file")
    assert q["d/blank.json"].startswith("empty file")
    assert "UTF-8" in q["d/latin1.json"]
    assert "not a JSON object" in q["d/not_object.json"]
    assert "heartbeat" in q["d/no_heartbeat.json"]
    assert "heartbeat" in q["d/text_heartbeat.json"]
    bad = {r.record["seq"]: r.reasons[0].check for r in result.bad_records["d/mixed.json"]}
    assert bad == {90: "missing", 91: "not_numeric", 92: "out_of_range_1970_2100"}
    # each keeps its object and line
    assert {(r.source_key, r.source_line) for r in result.bad_records["d/mixed.json"]} == {
        ("d/mixed.json", 5), ("d/mixed.json", 6), ("d/mixed.json", 7)}
    assert sorted((r[0], r[1]) for r in lake_rows(lake)) == sorted(
        [("d/good.json", i) for i in range(5)] + [("d/mixed.json", i) for i in range(4)])


def test_a_retry_of_the_same_claim_overwrites_its_own_files(storage, write_objects):
    raw, lake = storage
    write_objects(raw, {"r/a.json": ndjson(records(1, 10)), "r/b.json": ndjson(records(30, 10))})
    first = _compact(raw, lake, "run-retry", _claimed(raw))
    second = _compact(raw, lake, "run-retry", _claimed(raw))
    assert sorted(first.files) == sorted(second.files)
    assert first.bytes_out == second.bytes_out > 0
    assert len(lake_rows(lake)) == 20


def test_bytes_out_and_step_times_are_reported_without_reading_the_output_back(
        storage, write_objects):
    raw, lake = storage
    # two days, so the batch writes several files and counts rows per object from them
    write_objects(raw, {"m/a.json": ndjson(records(1, 10)), "m/b.json": ndjson(records(30, 7)),
                        "m/c.json": ndjson(records(50, 3))})
    result = _compact(raw, lake, "run-sizes", _claimed(raw))
    assert len(result.files) >= 2
    base = lake.url("").rstrip("/") + "/"  # result.files are URLs inside the lake
    assert result.bytes_out == sum(lake.size(f.removeprefix(base)) for f in result.files)
    assert result.counts == {"m/a.json": (10, 0), "m/b.json": (7, 0), "m/c.json": (3, 0)}
    assert {"clean", "schema", "copy", "count", "fence", "publish"} <= set(result.seconds)
    assert all(v >= 0 for v in result.seconds.values())


def test_taking_over_a_stale_claim_removes_its_partial_output(storage, write_objects):
    raw, lake = storage
    write_objects(raw, {"s/a.json": ndjson(records(1, 10)), "s/b.json": ndjson(records(50, 7))})
    stale = _compact(raw, lake, "run-crashed", _claimed(raw))
    assert len(lake_rows(lake)) == 17  # published, but the crashed run never marked SUCCESS
    fresh = _compact(raw, lake, "run-fresh", _claimed(raw, previous="run-crashed"))
    rows = lake_rows(lake)
    assert len(rows) == len(set((r[0], r[1]) for r in rows)) == 17
    assert not set(stale.files) & set(fresh.files)
    assert all("run-fresh" in f for f in fresh.files)


def test_no_valid_rows_writes_no_file(local_storage, write_objects):
    raw, lake = local_storage
    write_objects(raw, {"z/none.json": ndjson([{"heartbeat": None, "seq": 1}])})
    result = _compact(raw, lake, "run-empty", _claimed(raw))
    assert result.files == [] and result.rows_out == 0 and result.bytes_out == 0
    assert list(lake.list_objects(TARGET)) == []


def test_a_type_change_past_the_schema_sample_is_not_taken_for_a_malformed_object(
        local_storage, write_objects):
    raw, lake = local_storage
    rows = records(1, 2100)
    rows[-1]["temperature"] = "sensor fault"  # numbers for 2,099 records, then text
    write_objects(raw, {"t/late.json": ndjson(rows), "t/other.json": ndjson(records(2, 5))})
    result = _compact(raw, lake, "run-late", _claimed(raw))
    assert result.quarantined == {}
    assert result.rows_out == 2105
    assert len(lake_rows(lake)) == 2105


def _landed(seq: int, verdict: str | None, reasons: list | None = None, **extra) -> dict:
    line = {"heartbeat": heartbeat(HEARTBEAT_BASE_S + seq, "ms"), "seq": seq,
            "temperature": 20.0 + seq, **extra}
    if verdict is not None:
        line.update(verdict=verdict, reasons=reasons or [], rules_version=1)
    return line


def test_rejected_landed_lines_are_quarantined_with_key_and_line_not_published(
        storage, write_objects):
    raw, lake = storage
    too_hot = [{"column": "temperature", "check": "in_range(-20.0, 80.0)", "value": 99.0}]
    write_objects(raw, {
        # capture's landing: valid and rejected lines side by side
        "v/mixed.json": ndjson([_landed(0, "valid"), _landed(1, "rejected", too_hot),
                                _landed(2, "valid"), _landed(3, "rejected", too_hot)]),
        # a faulty device's object: every line rejected, and one heartbeat unusable too
        "v/all_rejected.json": ndjson([_landed(4, "rejected", too_hot),
                                       {**_landed(5, "rejected", too_hot), "heartbeat": "x"}]),
        # the seed's and older landings: no verdict, as before
        "v/old.json": ndjson([_landed(6, None), _landed(7, None)]),
    })
    result = _compact(raw, lake, "run-verdict", _claimed(raw))
    assert sorted(result.succeeded) == ["v/all_rejected.json", "v/mixed.json", "v/old.json"]
    assert not result.quarantined and result.rows_out == 4
    rows = lake_rows(lake)
    assert sorted((r[0], r[1]) for r in rows) == [
        ("v/mixed.json", 0), ("v/mixed.json", 2), ("v/old.json", 6), ("v/old.json", 7)]
    where = {(r.source_key, r.source_line, r.record["seq"]):
             [(x.column, x.check) for x in r.reasons]
             for k in result.bad_records for r in result.bad_records[k]}
    assert where == {
        ("v/mixed.json", 2, 1): [("temperature", "in_range(-20.0, 80.0)")],
        ("v/mixed.json", 4, 3): [("temperature", "in_range(-20.0, 80.0)")],
        ("v/all_rejected.json", 1, 4): [("temperature", "in_range(-20.0, 80.0)")],
        ("v/all_rejected.json", 2, 5): [("temperature", "in_range(-20.0, 80.0)"),
                                        ("heartbeat", "not_numeric")],
    }
    # the verdict columns stay out of the Parquet; the rule version stays in
    con = connect("1GB", tempfile.gettempdir(), [lake])
    names = {d[0] for d in con.execute("DESCRIBE SELECT * FROM read_parquet($f)",
                                       {"f": result.files}).fetchall()}
    assert "verdict" not in names and "reasons" not in names and "rules_version" in names
