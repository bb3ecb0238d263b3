"""The compaction chain on its defaults: registration of capture's landed layout and the
seed's, incremental listing, every district served, honest outcomes, the release hook."""

import uuid
from datetime import timedelta

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed
from sqlalchemy import select

from flows.s3_compaction import register_s3_keys, release_claims_on_exit, s3_compaction
from shopfloor.compaction.claims import claim_keys
from shopfloor.errors import ShopfloorError

from .helpers import META, lake_rows, ndjson, records, statuses

LOCAL = {"raw_logs": "cmp-raw-local", "metadata_db": META}
S3 = {"raw_logs": "cmp-raw-s3", "metadata_db": META}


def _capture_key(district: str, device: str, hour: int, name: str = "run") -> str:
    return f"dstrct_code={district}/{device}/20251120{hour:02d}/{name}.json"


def _distriks(pg_engine, registry) -> dict[str, str]:
    t = registry.s3_object
    with pg_engine.connect() as conn:
        return dict(conn.execute(select(t.c.key, t.c.distrik)).all())


def test_register_with_defaults_reads_capture_and_seed_layouts(
        meta_block, s3_blocks, registry, pg_engine, write_objects):
    raw, _ = s3_blocks
    write_objects(raw, {_capture_key("D01", "line1-plc", 14): b"{}\n",
                        "BRCB/2025/11/a.json": b"{}\n"})
    counts = register_s3_keys(**S3)
    assert (counts["listed"], counts["json"], counts["new"], counts["no_district"]) == (2, 2, 2, 0)
    assert _distriks(pg_engine, registry) == {
        _capture_key("D01", "line1-plc", 14): "D01", "BRCB/2025/11/a.json": "BRCB"}


def test_registration_lists_only_recent_hours_of_known_streams(
        meta_block, s3_blocks, registry, pg_engine, write_objects):
    raw, _ = s3_blocks
    old = {_capture_key("D01", f"plc{d}", h): b"{}\n" for d in range(3) for h in range(10)}
    write_objects(raw, old)
    first = register_s3_keys(**S3)
    assert first["new"] == first["listed"] == 30

    state = register_s3_keys(**S3, return_state=True)
    assert state.name == "Idle"
    again = state.result()
    # Per device: hours 7, 8 and 9 (the last and a 2-hour overlap), not all ten.
    assert (again["listed"], again["new"], again["known"]) == (9, 0, 9)

    write_objects(raw, {_capture_key("D01", "plc0", 10): b"{}\n",
                        _capture_key("D01", "plc1", 8, "late"): b"{}\n",
                        _capture_key("D02", "plc9", 3): b"{}\n"})
    counts = register_s3_keys(**S3)
    assert counts["new"] == 3
    write_objects(raw, {_capture_key("D01", "plc2", 1, "very-late"): b"{}\n"})
    assert register_s3_keys(**S3)["new"] == 0  # older than the overlap: not listed ...
    assert register_s3_keys(**S3, full_listing=True)["new"] == 1  # ... until a full listing
    assert len(statuses(pg_engine, registry)) == 34


def test_registration_that_skips_keys_is_degraded_and_failed_when_it_skips_all(
        meta_block, local_blocks, registry, write_objects):
    raw, _ = local_blocks
    write_objects(raw, {"plc9/a.json": b"{}\n", "plc9/b.json": b"{}\n"})
    state = register_s3_keys(**LOCAL, return_state=True)
    assert state.is_failed() and "name no district" in state.message
    with pytest.raises(ShopfloorError, match="all 2 JSON keys listed name no district"):
        register_s3_keys(**LOCAL)
    write_objects(raw, {"BRCB/2025/c.json": b"{}\n"})
    state = register_s3_keys(**LOCAL, return_state=True)
    assert state.name == "Degraded"
    assert state.result()["json"] == 3 and state.result()["no_district"] == 2


def test_compaction_on_defaults_serves_every_district(
        meta_block, s3_blocks, registry, pg_engine, write_objects, monkeypatch):
    import flows.s3_compaction as module

    events: list[tuple] = []
    monkeypatch.setattr(module, "emit", lambda *a, **kw: events.append((a, kw)))
    raw, lake = s3_blocks
    # Records without dstrct_code: the partition comes from the key's registered district.
    write_objects(raw, {_capture_key("D01", "plc1", 0): ndjson(records(1, 10)),
                        _capture_key("D02", "plc2", 0): ndjson(records(2, 10)),
                        "BRCB/2025/seed.json": ndjson(records(3, 10))})
    register_s3_keys(**S3)
    state = s3_compaction(raw_logs="cmp-raw-s3", lake="cmp-lake-s3", metadata_db=META,
                          ram_limit="256MB", return_state=True)
    assert state.is_completed() and state.name == "Completed"
    summary = state.result()
    assert summary["keys_claimed"] == 3 and summary["rows_out"] == 30
    assert set(statuses(pg_engine, registry).values()) == {"SUCCESS"}
    by_file = {(r[0], r[3]) for r in lake_rows(lake)}
    assert by_file == {(_capture_key("D01", "plc1", 0), "D01"),
                       (_capture_key("D02", "plc2", 0), "D02"), ("BRCB/2025/seed.json", "BRCB")}
    assert sorted((a[1], a[2]["rows"]) for a, _ in events) == [
        ("shopfloor.district.BRCB", 10), ("shopfloor.district.D01", 10),
        ("shopfloor.district.D02", 10)]
    assert all(a[0] == "shopfloor.partition.published" for a, _ in events)
    again = s3_compaction(raw_logs="cmp-raw-s3", lake="cmp-lake-s3", metadata_db=META,
                          return_state=True)
    assert again.name == "Idle" and again.result()["keys_claimed"] == 0


def test_the_key_limit_bounds_a_run_over_all_districts(
        meta_block, local_blocks, registry, pg_engine, write_objects):
    raw, _ = local_blocks
    write_objects(raw, {_capture_key(d, "plc", h): ndjson(records(h, 3))
                        for d in ("D01", "D02") for h in range(3)})
    register_s3_keys(**LOCAL)
    s = s3_compaction(raw_logs="cmp-raw-local", lake="cmp-lake-local", metadata_db=META,
                      key_limit_per_run=4, ram_limit="256MB")
    assert s["keys_claimed"] == 4
    assert sorted(statuses(pg_engine, registry).values()) == ["PENDING"] * 2 + ["SUCCESS"] * 4


def test_compaction_outcomes_degraded_and_failed(meta_block, local_blocks, registry,
                                                 pg_engine, write_objects):
    raw, _ = local_blocks
    write_objects(raw, {"BRCB/a.json": ndjson(records(1, 5)), "BRCB/b.json": b"{not json"})
    register_s3_keys(**LOCAL)
    params = {"raw_logs": "cmp-raw-local", "lake": "cmp-lake-local", "metadata_db": META,
              "ram_limit": "256MB"}
    state = s3_compaction(**params, return_state=True)
    assert state.name == "Degraded" and state.result()["keys_quarantined"] == 1

    write_objects(raw, {"SATU/c.json": b"[1, 2", "SATU/d.json": b""})
    register_s3_keys(**LOCAL)
    state = s3_compaction(**params, return_state=True)
    assert state.is_failed() and "every one of the 2 objects claimed was quarantined" in (
        state.message or "")
    assert statuses(pg_engine, registry)["SATU/c.json"] == "QUARANTINED"


def test_the_exit_hook_releases_the_runs_claims(meta_block, local_blocks, registry,
                                                pg_engine, write_objects):
    raw, _ = local_blocks
    write_objects(raw, {f"BRCB/{i}.json": b"{}\n" for i in range(3)})
    register_s3_keys(**LOCAL)
    run_id = uuid.uuid4()
    claim_keys(pg_engine, registry, "BRCB", 2, str(run_id), timedelta(minutes=60))
    claim_keys(pg_engine, registry, "BRCB", 1, "another-run", timedelta(minutes=60))
    # What Prefect hands the hook: the flow run, with the run's parameters.
    fake_run = FlowRun(id=run_id, name="fake-run", flow_id=uuid.uuid4(),
                       parameters={"metadata_db": META})
    release_claims_on_exit(s3_compaction, fake_run, Failed(message="crashed"))
    assert sorted(statuses(pg_engine, registry).values()) == ["CLAIMED", "PENDING", "PENDING"]


def _flow_run_in(state) -> str:  # noqa: ANN001
    """A real flow run on the test's Prefect API, set to ``state``; its id."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="claim-holder")
    def holder() -> None: ...

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(holder, state=state)
    return str(run.id)


def test_claims_of_runs_prefect_knows_ended_are_taken_at_once(
        meta_block, local_blocks, registry, pg_engine, write_objects):
    """A run that failed while the metadata database was away could not give its keys
    back (its release hook failed too): the next run asks Prefect which claimers are
    over and takes their keys at once, on the default one-hour TTL. A claimer still
    running keeps its keys until the TTL."""
    from prefect.states import Running

    raw, lake = local_blocks
    write_objects(raw, {f"BRCB/{i}.json": ndjson(records(i, 5)) for i in range(4)})
    register_s3_keys(**LOCAL)
    failed, running = _flow_run_in(Failed(message="metadata database away")), \
        _flow_run_in(Running())
    claim_keys(pg_engine, registry, "BRCB", 2, failed, timedelta(minutes=60))
    claim_keys(pg_engine, registry, "BRCB", 2, running, timedelta(minutes=60))
    state = s3_compaction(raw_logs="cmp-raw-local", lake="cmp-lake-local", metadata_db=META,
                          ram_limit="256MB", return_state=True)
    assert state.is_completed() and state.result()["keys_claimed"] == 2
    t = registry.s3_object
    with pg_engine.connect() as conn:
        rows = conn.execute(select(t.c.key, t.c.compression_status, t.c.compression_run_id)
                            .order_by(t.c.key)).all()
    assert [(k, s) for k, s, _ in rows] == [("BRCB/0.json", "SUCCESS"),
                                            ("BRCB/1.json", "SUCCESS"),
                                            ("BRCB/2.json", "CLAIMED"),
                                            ("BRCB/3.json", "CLAIMED")]
    assert {r for _, _, r in rows[2:]} == {running}
    assert sorted({r[0] for r in lake_rows(lake)}) == ["BRCB/0.json", "BRCB/1.json"]
