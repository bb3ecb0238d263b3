"""kill -9 of a process running s3-compaction at chosen points, then runs until nothing is
pending: every valid record is in the output exactly once."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.s3_compaction import register_s3_keys, s3_compaction
from shopfloor.compaction.faults import PAUSE_AT, PAUSE_FILE

from .helpers import META, lake_rows, ndjson, records, statuses

REPO = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent("""
    from flows.s3_compaction import s3_compaction
    s3_compaction(distrik="BRCB", raw_logs={raw!r}, lake={lake!r}, metadata_db={meta!r},
                  key_limit_per_run=4, ram_limit="256MB")
""")


def _run_child_until(point: str, raw_block: str, lake_block: str, marker: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           PAUSE_AT: point, PAUSE_FILE: str(marker)}
    code = CHILD.format(raw=raw_block, lake=lake_block, meta=META)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"child ended before {point}: {child.stderr.read().decode()[-2000:]}")
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()


@pytest.mark.parametrize("point, where", [
    ("after_compact", "local"),   # files published, keys still CLAIMED
    ("mid_publish", "local"),     # manifest written, only some files moved
    ("mid_publish", "s3"),
])
def test_kill_9_then_runs_until_done_leave_every_record_once(
        point, where, request, meta_block, pg_engine, registry, write_objects, tmp_path):
    raw, lake = request.getfixturevalue(f"{where}_blocks")
    raw_block, lake_block = f"cmp-raw-{where}", f"cmp-lake-{where}"
    # Records of each object span two days, so one object lands in several partitions.
    write_objects(raw, {f"plc/{i:02d}.json": ndjson(records(i * 6, 30)) for i in range(6)})
    register_s3_keys(raw_logs=raw_block, distrik="BRCB", metadata_db=META)

    _run_child_until(point, raw_block, lake_block, tmp_path / "paused")
    assert "CLAIMED" in statuses(pg_engine, registry).values()

    for _ in range(5):
        s = s3_compaction(distrik="BRCB", raw_logs=raw_block, lake=lake_block,
                          metadata_db=META, key_limit_per_run=4, claim_ttl_minutes=0,
                          ram_limit="256MB")
        if s["keys_claimed"] == 0:
            break
    assert set(statuses(pg_engine, registry).values()) == {"SUCCESS"}
    rows = lake_rows(lake)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == 6 * 30
