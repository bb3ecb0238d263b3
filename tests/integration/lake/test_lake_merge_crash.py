"""A merge killed (``kill -9``) at each step, then run again: every row exactly once. And a
reader in a loop during several merges always sees every row exactly once."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from shopfloor.lake import protocol
from shopfloor.lake.merge import maintain

from .conftest import PARTITION, TODAY, write_files

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import sys, uuid
from datetime import date
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.db.engine import init_db, make_engine
from shopfloor.lake.merge import MergeSpec, maintain
from shopfloor.storage import S3Credentials, StorageLocation
kind, root, prefix, endpoint, url = sys.argv[1:6]
creds = S3Credentials("testing", "testing", None, "us-east-1", endpoint) if kind == "s3" else None
lake = StorageLocation(kind, root, prefix, creds)
engine = make_engine(url)
spec = MergeSpec(lake, "datalog_v2", engine, init_db(engine))
maintain(spec, date(2026, 1, 20), 7, lambda: uuid.uuid4().hex, hook=pause_hook_from_env())
"""


def _crash_at(point: str, lake, sqlite_url: str, tmp_path: Path) -> None:
    marker = tmp_path / f"paused-{point}"
    endpoint = lake.credentials.endpoint_url if lake.credentials else ""
    env = dict(os.environ, PYTHONPATH=str(ROOT), SHOPFLOOR_FAULT_PAUSE_AT=point,
               SHOPFLOOR_FAULT_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, lake.kind, lake.root, lake.prefix,
                             endpoint, sqlite_url], env=env, start_new_session=True)
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), f"the merge never reached {point} (exit {proc.poll()})"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("point", ["after_stage", "mid_publish", "after_publish"])
def test_a_merge_killed_at_any_step_is_recovered_exactly_once(point, lake, spec, sqlite_url,
                                                              tmp_path):
    expected = Counter(write_files(lake, PARTITION, 6))
    size = max(o.size for o in lake.list_objects(PARTITION))
    # Three files per group: two outputs, so a kill after the first move is mid-publish.
    os.environ.pop("SHOPFLOOR_FAULT_PAUSE_AT", None)
    spec(target_bytes=3 * size)  # the claims table exists before the child starts
    _crash_at(point, lake, sqlite_url, tmp_path)
    # Readers never see a half-done merge, whatever the step it died at.
    assert Counter(protocol.read_partition(lake, PARTITION, "id").column("id").to_pylist()
                   ) == expected
    # The dead run's claim goes stale (TTL 0 here), the next run recovers and merges.
    [res] = maintain(spec(claim_ttl=timedelta(0)), TODAY, 7, lambda: uuid.uuid4().hex)
    # Staged only: no manifest, the staging is dropped; moved in but not committed: rolled
    # back; committed: rolled forward (the retired inputs deleted).
    assert res.recovered == {"after_stage": [], "mid_publish": ["back"],
                             "after_publish": ["forward"]}[point]
    assert Counter(protocol.read_partition(lake, PARTITION, "id").column("id").to_pylist()
                   ) == expected
    files = [o.key for o in lake.list_objects(PARTITION) if o.key.endswith(".parquet")]
    assert all("/merged-" in k for k in files), files
    assert not list(lake.list_objects("_lake_merge"))


def test_a_reader_in_a_loop_sees_every_row_once_during_several_merges(lake, spec):
    expected = Counter(write_files(lake, PARTITION, 16))
    stop, seen, errors = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                got = protocol.read_partition(lake, PARTITION, "id").column("id").to_pylist()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))
                return
            seen.append(Counter(got) == expected)

    def slow(point: str) -> None:
        time.sleep(0.15)  # widen the windows between moves, commit and deletes

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        # Merge in rounds: pairs of files, pairs of those, then everything; each round
        # swaps every row of the partition.
        rounds = []
        for last in (False, False, True):
            size = max(o.size for o in protocol.visible_files(lake, PARTITION))
            target = 64 * 2**20 if last else int(2.2 * size)
            rounds += maintain(spec(target_bytes=target), TODAY, 7,
                               lambda: uuid.uuid4().hex, hook=slow)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert [r.status for r in rounds] == ["merged"] * 3
    assert [r.files_out for r in rounds] == [8, 4, 1]
    assert len(seen) >= 5 and all(seen), f"{seen.count(False)} of {len(seen)} reads wrong"
