"""A run frozen past its claim and taken over publishes nothing once resumed (fencing).

Kills at every step, in chains, are the crash-schedule harness's (tests/crash)."""

import os

from prefect.settings import PREFECT_API_URL

from flows.s3_compaction import register_s3_keys, s3_compaction
from shopfloor.compaction.faults import PAUSE_AT, PAUSE_FILE, RESUME_FILE

from .helpers import META, lake_rows, ndjson, records, start_paused_child, statuses


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
    child = start_paused_child(code, env, marker)
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
