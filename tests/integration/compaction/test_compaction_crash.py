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
from shopfloor.compaction.faults import PAUSE_AT, PAUSE_FILE, RESUME_FILE

from .helpers import META, lake_rows, ndjson, records, statuses

REPO = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent("""
    from flows.s3_compaction import s3_compaction
    s3_compaction(distrik="BRCB", raw_logs={raw!r}, lake={lake!r}, metadata_db={meta!r},
                  key_limit_per_run=4, ram_limit="256MB")
""")


def _start_paused_child(code: str, env: dict[str, str], marker: Path) -> subprocess.Popen:
    """Run ``code`` in a child process until its pause hook writes ``marker``."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"child ended before pausing: {child.stderr.read()[-2000:]}")
        try:
            child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    return child


def _run_child_until(point: str, raw_block: str, lake_block: str, marker: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           PAUSE_AT: point, PAUSE_FILE: str(marker)}
    child = _start_paused_child(CHILD.format(raw=raw_block, lake=lake_block, meta=META),
                                env, marker)
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


def test_a_run_paused_past_its_claim_publishes_nothing_once_taken_over(
        meta_block, pg_engine, registry, write_objects, tmp_path, local_blocks):
    """The first run stages its Parquet and stops (as if frozen past its claim TTL); a
    second run takes the claim over and publishes. Resumed, the first run's fence finds
    the claim gone: it publishes nothing, fails naming the second run, and every record
    is in the lake exactly once."""
    raw, lake = local_blocks
    write_objects(raw, {f"dstrct_code=D01/plc/20251120{i:02d}/run.json": ndjson(records(i, 25))
                        for i in range(4)})
    register_s3_keys(raw_logs="cmp-raw-local", metadata_db=META)
    marker, resume = tmp_path / "paused", tmp_path / "resume"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           PAUSE_AT: "after_stage", PAUSE_FILE: str(marker), RESUME_FILE: str(resume)}
    code = ("from flows.s3_compaction import s3_compaction\n"
            "s3_compaction(raw_logs='cmp-raw-local', lake='cmp-lake-local', "
            f"metadata_db={META!r}, ram_limit='256MB')\n")
    child = _start_paused_child(code, env, marker)
    try:
        assert set(statuses(pg_engine, registry).values()) == {"CLAIMED"}
        # TTL 0 stands for "the first run's claim is older than the TTL".
        state = s3_compaction(raw_logs="cmp-raw-local", lake="cmp-lake-local",
                              metadata_db=META, claim_ttl_minutes=0, ram_limit="256MB",
                              return_state=True)
        assert state.is_completed() and state.result()["keys_succeeded"] == 4
        taker = str(state.state_details.flow_run_id)
        resume.write_text("go")
        _, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert f"claim taken over by run {taker}" in err
    assert set(statuses(pg_engine, registry).values()) == {"SUCCESS"}
    rows = lake_rows(lake)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == 4 * 25
    assert [o.key for o in lake.list_objects("_compaction")] == []  # no staging, no manifest
