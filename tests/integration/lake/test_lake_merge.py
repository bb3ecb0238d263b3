"""Merging closed partitions on a local folder and on moto's S3: rows kept exactly once,
one schema per partition, reruns idle, claims and writers in flight respected."""

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq

from shopfloor.lake import claims, protocol
from shopfloor.lake.merge import maintain, merge_partition

from .conftest import PARTITION, PREFIX, TODAY, write_files


def ids_of(lake, partition=PARTITION) -> Counter:
    return Counter(protocol.read_partition(lake, partition, "id").column("id").to_pylist())


def data_files(lake, prefix=PREFIX) -> list[str]:
    return sorted(o.key for o in lake.list_objects(prefix) if o.key.endswith(".parquet"))


def token() -> str:
    return uuid.uuid4().hex


def test_small_files_with_a_schema_change_become_one_file_with_every_row(lake, spec):
    expected = Counter(write_files(lake, PARTITION, 24))
    assert ids_of(lake) == expected
    [res] = maintain(spec(), TODAY, 7, token)
    assert res.status == "merged", res.message
    assert (res.files_in, res.files_out, res.rows) == (24, 1, 120)
    assert "extra: missing in" in res.unified
    assert "mode: cast to text" in res.unified and "heartbeat: widened" in res.unified
    [merged] = data_files(lake)
    assert merged.rsplit("/", 1)[-1].startswith("merged-")
    table = pq.read_table(lake.path(merged), filesystem=lake.arrow_filesystem())
    assert str(table.schema.field("heartbeat").type) == "double"
    assert str(table.schema.field("mode").type) == "string"
    assert table.column("extra").null_count == 40  # the first third had no such field
    assert ids_of(lake) == expected
    assert not list(lake.list_objects("_lake_merge"))


def test_a_rerun_changes_nothing(lake, spec):
    write_files(lake, PARTITION, 6)
    maintain(spec(), TODAY, 7, token)
    before = [(o.key, o.size) for o in lake.list_objects(PREFIX)]
    assert maintain(spec(), TODAY, 7, token) == []
    assert [(o.key, o.size) for o in lake.list_objects(PREFIX)] == before


def test_open_partitions_and_lone_files_are_left_alone(lake, spec):
    write_files(lake, f"{PREFIX}/hiveperiod=2026-01-18/dstrct_code=BRCB", 5)  # within grace
    write_files(lake, f"{PREFIX}/hiveperiod=2026-01-02/dstrct_code=BRCB", 1)  # one file
    write_files(lake, f"{PREFIX}/hiveperiod=2026-01-03/dstrct_code=BRCB", 3)
    before = data_files(lake)
    assert maintain(spec(min_files=4), TODAY, 7, token) == []
    assert data_files(lake) == before


def test_late_files_are_merged_with_the_earlier_merge(lake, spec):
    expected = Counter(write_files(lake, PARTITION, 4))
    maintain(spec(), TODAY, 7, token)
    expected += Counter(write_files(lake, PARTITION, 3, start=1000, run="late"))
    [res] = maintain(spec(), TODAY, 7, token)
    assert (res.status, res.files_in, res.files_out) == ("merged", 4, 1)
    assert ids_of(lake) == expected and len(data_files(lake)) == 1


def test_target_size_cuts_the_partition_into_several_files(lake, spec):
    expected = Counter(write_files(lake, PARTITION, 12))
    size = max(o.size for o in lake.list_objects(PARTITION))
    [res] = maintain(spec(target_bytes=4 * size), TODAY, 7, token)
    assert res.files_out == 3 and ids_of(lake) == expected


def test_a_partition_claimed_by_another_run_is_skipped(lake, spec):
    write_files(lake, PARTITION, 4)
    s = spec()
    assert claims.take(s.engine, s.tables, claims.claim_name(PREFIX, PARTITION), "other",
                       s.claim_ttl)
    [res] = maintain(s, TODAY, 7, token)
    assert (res.status, res.message) == ("skipped", "claimed by another run")
    assert len(data_files(lake)) == 4


def test_a_claim_of_a_run_known_to_be_over_is_taken_at_once(lake, spec):
    """The claim names its run; when the task says that run has ended, the claim is
    free at once. Any other holder's claim waits for the TTL."""
    write_files(lake, PARTITION, 4)
    crashed, running = str(uuid.uuid4()), str(uuid.uuid4())
    dead = claims.holder("a" * 32, crashed)
    assert claims.holder_run(dead) == crashed and len(dead) == 64
    assert claims.holder_run("a" * 32) is None and claims.holder("a" * 32, "") == "a" * 32
    s = spec()
    name = claims.claim_name(PREFIX, PARTITION)
    assert claims.take(s.engine, s.tables, name, dead, s.claim_ttl)
    assert claims.held(s.engine, s.tables) == [dead]
    assert claims.runs_holding(s.engine, s.tables) == {crashed: [dead]}
    alive = spec(ended=(claims.holder("b" * 32, running),))
    [res] = maintain(alive, TODAY, 7, token)
    assert (res.status, res.message) == ("skipped", "claimed by another run")
    [res] = maintain(spec(ended=(dead,)), TODAY, 7, token)
    assert (res.status, res.files_in, res.files_out) == ("merged", 4, 1)
    assert claims.held(s.engine, s.tables) == []  # released under its new holder


def test_files_a_compaction_is_still_publishing_are_not_merged(lake, spec):
    write_files(lake, PARTITION, 4)
    manifest = {"token": "run1", "files": [f"{PARTITION}/part-r.BRCB-0.parquet"]}
    lake.write_bytes(f"_compaction/{PREFIX}/manifests/run1.BRCB.json",
                     json.dumps(manifest).encode())
    [res] = maintain(spec(), TODAY, 7, token)
    assert (res.status, res.message) == (
        "skipped", "a writer is publishing into it; merged by a later run")
    assert len(data_files(lake)) == 4
    lake.delete([f"_compaction/{PREFIX}/manifests/run1.BRCB.json"])
    assert maintain(spec(), TODAY, 7, token)[0].status == "merged"


def test_two_runs_at_once_merge_each_partition_once(lake, spec):
    expected = Counter()
    parts = [f"{PREFIX}/hiveperiod=2026-01-0{d}/dstrct_code=BRCB" for d in range(1, 7)]
    for p in parts:
        expected += Counter(write_files(lake, p, 5, start=1000 * len(expected)))
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: maintain(spec(), TODAY, 7, token), range(2)))
    merged = [r.partition for run in runs for r in run if r.status == "merged"]
    assert sorted(merged) == parts
    assert Counter(protocol.read_lake(lake, PREFIX, "id").column("id").to_pylist()) == expected


def test_spark_date_partitions_are_merged_sorted_by_tag_and_time(lake, spec):
    import pyarrow as pa

    fs = lake.arrow_filesystem()
    for n in range(6):
        key = f"sensor_data/date=2026-01-05/part-{n}.parquet"
        lake.make_parent(key)
        pq.write_table(pa.table({"tagid": pa.array([6 - n] * 3, pa.int32()),
                                 "ts": pa.array([3, 1, 2], pa.int64()),
                                 "value": pa.array([1.0, 2.0, 3.0])}),
                       lake.path(key), filesystem=fs)
    [res] = merge_partition_result = maintain(spec(prefix="sensor_data"), TODAY, 7, token)
    assert res.status == "merged" and merge_partition_result
    [merged] = data_files(lake, "sensor_data")
    t = pq.read_table(lake.path(merged), filesystem=fs)
    pairs = list(zip(t.column("tagid").to_pylist(), t.column("ts").to_pylist(), strict=True))
    assert pairs == sorted(pairs) and len(pairs) == 18


def test_merge_partition_alone_reports_nothing_to_do_on_a_merged_partition(lake, spec):
    write_files(lake, PARTITION, 3)
    assert merge_partition(spec(), PARTITION, token()).status == "merged"
    res = merge_partition(spec(), PARTITION, token())
    assert res.status == "skipped" and res.message.startswith("nothing to merge")
