"""The lake-maintenance flow on blocks: merges, says what it unified, then ends Idle."""

from collections import Counter
from datetime import date, timedelta

from prefect.filesystems import LocalFileSystem

from blocks.bootstrap import connector_from_url
from flows.lake_maintenance import lake_maintenance
from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation

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
