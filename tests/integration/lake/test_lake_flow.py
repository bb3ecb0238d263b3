"""The lake-maintenance flow on blocks: merges, says what it unified, then ends Idle."""

import uuid
from collections import Counter
from datetime import date, timedelta

import httpx
import pytest
from prefect.filesystems import LocalFileSystem

from blocks.bootstrap import connector_from_url
from flows.lake_maintenance import lake_maintenance
from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation
from tasks import runtime

from .conftest import PREFIX, write_files


def test_the_flow_merges_closed_partitions_then_has_nothing_to_do(tmp_path, sqlite_url,
                                                                  prefect_harness):
    from shopfloor.db.engine import init_db, make_engine

    init_db(make_engine(sqlite_url))
    connector_from_url(sqlite_url).save("lake-meta", overwrite=True)
    LocalFileSystem(basepath=str(tmp_path / "lake")).save("lake-local", overwrite=True)
    lake = StorageLocation("local", str(tmp_path / "lake"))
    old = (date.today() - timedelta(days=10)).isoformat()
    partition = f"{PREFIX}/hiveperiod={old}/dstrct_code=BRCB"
    expected = Counter(write_files(lake, partition, 9))
    state = lake_maintenance(lake="lake-local", metadata_db="lake-meta", return_state=True)
    summary = state.result()
    assert state.name == "Completed"
    assert (summary["partitions_merged"], summary["files_in"], summary["files_out"]) == (1, 9, 1)
    got = protocol.read_partition(lake, partition, "id").column("id").to_pylist()
    assert Counter(got) == expected
    again = lake_maintenance(lake="lake-local", metadata_db="lake-meta", return_state=True)
    assert again.name == "Idle"


def _flow_run_in(state) -> str:  # noqa: ANN001
    """A real flow run on the test's Prefect API, set to ``state``; its id."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="claim-holder")
    def holder() -> None: ...

    with get_client(sync_client=True) as client:
        return str(client.create_flow_run(holder, state=state).id)


@pytest.mark.parametrize("api_answers", [True, False], ids=["asked", "api-refused"])
def test_claims_of_runs_prefect_knows_ended_are_taken_at_once(tmp_path, sqlite_url,
                                                              prefect_harness, monkeypatch,
                                                              api_answers):
    """A run that crashed mid-merge, or failed while the metadata database was away,
    cannot give its partition claim back: the next run asks Prefect which claimers are
    over and merges their partitions at once, on the default one-hour TTL. A claimer
    still running keeps its partition until the TTL."""
    from prefect.states import Crashed, Running

    from shopfloor.db.engine import init_db, make_engine
    from shopfloor.lake import claims

    engine = make_engine(sqlite_url)
    tables = init_db(engine)
    connector_from_url(sqlite_url).save("lake-meta-ended", overwrite=True)
    LocalFileSystem(basepath=str(tmp_path / "lake")).save("lake-ended", overwrite=True)
    lake = StorageLocation("local", str(tmp_path / "lake"))
    days = [(date.today() - timedelta(days=d)).isoformat() for d in (10, 11)]
    crashed_part, running_part = (f"{PREFIX}/hiveperiod={d}/dstrct_code=BRCB" for d in days)
    expected = Counter(write_files(lake, crashed_part, 4))
    expected += Counter(write_files(lake, running_part, 4, start=1000))
    for partition, state in ((crashed_part, Crashed()), (running_part, Running())):
        holder = claims.holder(uuid.uuid4().hex, _flow_run_in(state))
        assert claims.take(engine, tables, claims.claim_name(PREFIX, partition), holder,
                           timedelta(minutes=60))
    if not api_answers:  # the question fails: the run goes on, the claims wait for the TTL
        def refused(tokens: list[str]) -> list[str]:
            raise httpx.ConnectError("connection refused")
        monkeypatch.setattr(runtime, "ended_runs", refused)
        state = lake_maintenance(lake="lake-ended", prefixes=[PREFIX],
                                 metadata_db="lake-meta-ended", return_state=True)
        assert state.name == "Idle"  # nothing it could merge: both claims are live to it
        assert (state.result()["partitions_merged"], state.result()["partitions_skipped"]) \
            == (0, 2)
        monkeypatch.undo()
    state = lake_maintenance(lake="lake-ended", prefixes=[PREFIX],
                             metadata_db="lake-meta-ended", return_state=True)
    summary = state.result()
    assert (summary["partitions_merged"], summary["partitions_skipped"]) == (1, 1)
    assert len(protocol.read_partition(lake, crashed_part, "id")) == 20
    def parquet(partition: str) -> list[str]:
        return [o.key.rsplit("/", 1)[-1] for o in lake.list_objects(partition)
                if o.key.endswith(".parquet")]

    assert [f.startswith("merged-") for f in parquet(crashed_part)] == [True]
    assert len(parquet(running_part)) == 4  # still claimed: untouched
    got = protocol.read_lake(lake, PREFIX, "id").column("id").to_pylist()
    assert Counter(got) == expected
    assert [claims.holder_run(v) is not None for v in claims.held(engine, tables)] == [True]
    engine.dispose()
