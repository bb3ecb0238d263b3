"""The Spark extraction's staged replace under chains of kill -9: a reader following the
lake protocol sees the window's old month whole or its new month whole, never half or
twice; after a run that is not killed, the new month exactly once and nothing left in
``_extraction/``. Runs the flow's publish functions (tests/crash/extraction_target.py)
without Spark, so hundreds of schedules fit in minutes; tests/integration/spark covers
the same replace inside the real flow. Backs docs/spark_extraction.md's promise that a
failed or killed rerun keeps the old output."""

import shutil
from collections import Counter
from pathlib import Path

import pytest

from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation

from . import extraction_target as target
from .harness import Kill, Schedule, draw_schedule, run_schedule, seeds

POINTS = ("after_stage", "mid_publish", "after_publish", "after_commit")
OUTSIDE = [v for p, vs in target.OLD.items() if "2026-01-30" in p for v in vs]
OLD = Counter(v for vs in target.OLD.values() for v in vs)
NEW = Counter([*(v for files in target.NEW.values() for vs in files for v in vs), *OUTSIDE])


class ExtractionCase:
    target = "tests.crash.extraction_target:run"
    min_recovery_runs = 1  # a rerun of the month is the recovery

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lake = StorageLocation("local", str(root))

    def kwargs(self, taking_over: bool) -> dict:
        return {"root": str(self.root)}

    def check_visible(self, when: str) -> None:
        table = protocol.read_lake(self.lake, target.OUTPUT, "v")
        seen = Counter(table.column("v").to_pylist()) if len(table) else Counter()
        assert seen in (OLD, NEW), f"{when}: a reader saw {sorted(seen.elements())}"

    def done(self) -> bool:
        return not list(self.lake.list_objects("_extraction"))

    def check_final(self) -> None:
        self.check_visible("final")
        table = protocol.read_lake(self.lake, target.OUTPUT, "v")
        assert Counter(table.column("v").to_pylist()) == NEW
        assert list(self.lake.list_objects("_extraction")) == []
        # Every Parquet file, protocol or not: the old month's files are all gone.
        import pyarrow.parquet as pq
        files = [o.key for o in self.lake.list_objects(target.OUTPUT)
                 if o.key.endswith(".parquet")]
        assert Counter(v for k in files for v in pq.read_table(self.lake.path(k))
                       .column("v").to_pylist()) == NEW


@pytest.fixture(scope="module")
def runner(zygote_factory):
    return zygote_factory("tests.crash.extraction_target")


def _fresh(tmp_path: Path) -> ExtractionCase:
    root = tmp_path / "lake"
    shutil.rmtree(root, ignore_errors=True)
    target.write_old(str(root))
    return ExtractionCase(root)


def test_replace_killed_after_commit_then_mid_publish_then_recovered(runner, tmp_path):
    case = _fresh(tmp_path)
    case.check_visible("before")
    report = run_schedule(runner, case, Schedule(0, (Kill("after_commit"),
                                                     Kill("mid_publish"),
                                                     Kill("after_publish"))))
    assert all(o.killed for o in report.outcomes)


@pytest.mark.parametrize("seed", seeds(default_count=4, salt=4))
def test_seeded_extraction_replace_crash_schedules_hold(seed, runner, tmp_path):
    case = _fresh(tmp_path)
    run_schedule(runner, case, draw_schedule(seed, POINTS, max_delay=0.6))
