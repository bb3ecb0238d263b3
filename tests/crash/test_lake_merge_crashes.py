"""lake-maintenance (the merge of closed partitions) under chains of kill -9, then
recovery: a reader sees every row exactly once at every moment in between, and after
recovery every partition is merged with nothing left in staging. Backs the exactly-once
promise of docs/lake_maintenance.md."""

import random
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.filesystems import LocalFileSystem

from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation

from .conftest import META
from .harness import Kill, Schedule, draw_schedule, run_schedule, seeds

PREFIX = "datalog_v2"
PARTITIONS = [f"{PREFIX}/hiveperiod=2026-01-0{d}/dstrct_code=BRCB" for d in (5, 6)]
FILES, ROWS = 6, 18_000  # ~290 KB a file: a 1 MB target makes two merged files a partition
POINTS = ("after_stage", "mid_publish", "after_publish")


def _write(lake: StorageLocation, seed: int) -> Counter:
    rng = random.Random(seed)
    ids: Counter = Counter()
    for p, partition in enumerate(PARTITIONS):
        for n in range(FILES):
            start = (p * FILES + n) * ROWS
            table = pa.table({"id": pa.array(range(start, start + ROWS), pa.int64()),
                              "v": pa.array([rng.random() for _ in range(ROWS)])})
            key = f"{partition}/part-w{n}.BRCB-{n}.parquet"
            lake.make_parent(key)
            pq.write_table(table, lake.path(key))
            ids.update(range(start, start + ROWS))
    return ids


class MergeCase:
    target = "flows.lake_maintenance:lake_maintenance"

    def __init__(self, lake: StorageLocation, expected: Counter) -> None:
        self.lake, self.expected = lake, expected

    def kwargs(self, taking_over: bool) -> dict:
        return {"lake": "crash-merge-lake", "prefixes": [PREFIX], "metadata_db": META,
                "target_file_mb": 1, "claim_ttl_minutes": 0, "ram_limit": "512MB"}

    def check_visible(self, when: str) -> None:
        ids = protocol.read_lake(self.lake, PREFIX, "id").column("id").to_pylist()
        seen = Counter(ids)
        assert seen == self.expected, (
            f"{when}: a reader saw {len(ids)} rows for {sum(self.expected.values())}: "
            f"{sum(1 for n in seen.values() if n > 1)} twice, "
            f"{len(set(self.expected) - set(seen))} missing")

    def _unmerged(self) -> list[str]:
        return [o.key for p in PARTITIONS for o in self.lake.list_objects(p)
                if o.key.endswith(".parquet") and "/merged-" not in o.key]

    def done(self) -> bool:
        return not list(self.lake.list_objects("_lake_merge")) and not self._unmerged()

    def check_final(self) -> None:
        self.check_visible("final")
        assert self._unmerged() == []
        assert list(self.lake.list_objects("_lake_merge")) == []
        # Without the protocol too: the retired inputs are gone, each row is in one file.
        files = [self.lake.path(o.key) for p in PARTITIONS for o in self.lake.list_objects(p)
                 if o.key.endswith(".parquet")]
        ids = [i for f in files for i in pq.read_table(f, columns=["id"]).column("id")
               .to_pylist()]
        assert Counter(ids) == self.expected


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory, prefect_harness) -> Path:
    root = tmp_path_factory.mktemp("crash-merge")
    LocalFileSystem(basepath=str(root / "lake")).save("crash-merge-lake", overwrite=True)
    return root


@pytest.fixture(scope="module")
def runner(zygote_factory, meta_block):
    return zygote_factory("flows.lake_maintenance")


def _fresh(lake_root: Path, seed: int) -> MergeCase:
    shutil.rmtree(lake_root / "lake", ignore_errors=True)
    lake = StorageLocation("local", str(lake_root / "lake"))
    return MergeCase(lake, _write(lake, seed))


def test_a_merge_killed_three_times_in_a_row_then_recovered(runner, lake_root):
    """Killed after its first move, the run taking over killed after staging, the next
    one killed after its commit's moves: one recovery run, every row once throughout."""
    case = _fresh(lake_root, 0)
    schedule = Schedule(0, (Kill("mid_publish"), Kill("after_stage", 2),
                            Kill("after_publish")))
    report = run_schedule(runner, case, schedule)
    assert all(o.killed for o in report.outcomes)


@pytest.mark.parametrize("seed", seeds(default_count=2, salt=2))
def test_seeded_merge_crash_schedules_hold(seed, runner, lake_root):
    case = _fresh(lake_root, seed)
    run_schedule(runner, case, draw_schedule(seed, POINTS, max_nth=2, max_delay=3.0))
