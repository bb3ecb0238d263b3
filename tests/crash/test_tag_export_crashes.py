"""The tag lake export under chains of kill -9 (docs/tags.md, "The lake in long format"):
killed at each step of its publish (staged; manifest written and first file moved; all
moved; committed; published but watermark not moved) or at a random instant, one to
three times in a row, a lake-protocol reader sees every exported sample once (the
previous export whole, or with the new samples and replays applied), never twice and
never losing one; after a run that is not killed, every sample ingested up to the run's
horizon is in the lake exactly once, as the warehouse holds it, the watermark moved and
nothing left under ``_extraction/``."""

from datetime import timedelta
from pathlib import Path

import pytest

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.watermark import get_watermark
from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation
from shopfloor.tags.lake_export import DEFAULT_LAG, export, watermark_name
from tests.integration.lake.test_tag_lake_export import (
    T0,
    assert_exactly_once,
    key_of,
    lake_rows,
    samples,
    warehouse_rows,
    write,
)

from . import tag_export_target as target
from .harness import Kill, Schedule, draw_schedule, run_schedule, seeds

POINTS = ("after_stage", "mid_publish", "after_publish", "after_commit", "before_watermark")
NOW1 = T0 + timedelta(hours=1)
NOW2 = NOW1 + timedelta(hours=1)


class TagExportCase:
    target = "tests.crash.tag_export_target:run"

    def __init__(self, root: Path, db_url: str) -> None:
        self.root, self.db_url = root, db_url
        self.lake = StorageLocation("local", str(root / "lake"))
        self.engine = make_engine(db_url)
        self.tables = init_db(self.engine)
        # A first export, then new samples, a late one of an old month and replays.
        write(self.engine, self.tables, samples([1, 2, 3], T0, 60,
                                                T0 + timedelta(minutes=10), seed=1))
        export(self.engine, self.tables, self.lake, target.PREFIX, NOW1, "first")
        self.before = warehouse_rows(self.engine, self.tables, NOW1 - DEFAULT_LAG)
        write(self.engine, self.tables, samples([1, 2, 3], T0 + timedelta(minutes=5), 60,
                                                NOW1 + timedelta(minutes=10), seed=2))
        write(self.engine, self.tables, samples([2], T0 - timedelta(days=40), 5,
                                                NOW1 + timedelta(minutes=15), seed=3))
        self.after = warehouse_rows(self.engine, self.tables, NOW2 - DEFAULT_LAG)

    def kwargs(self, taking_over: bool) -> dict:
        return {"root": str(self.root / "lake"), "db_url": self.db_url,
                "now": NOW2.isoformat()}

    def check_visible(self, when: str) -> None:
        rows = lake_rows(self.lake)
        keys = [key_of(r) for r in rows]
        assert len(keys) == len(set(keys)), f"{when}: a sample is seen twice"
        assert set(keys) >= set(self.before), f"{when}: an exported sample is gone"
        assert set(keys) <= set(self.after), f"{when}: a sample nobody wrote"
        for r in rows:  # the version exported before, or the newest one
            versions = {(v["value"], v["text_value"]) for v in
                        (self.before.get(key_of(r)), self.after[key_of(r)]) if v}
            assert (r["value"], r["text_value"]) in versions, f"{when}: {key_of(r)}"

    def done(self) -> bool:
        with self.engine.connect() as conn:
            mark = get_watermark(conn, self.tables, watermark_name(target.PREFIX))
        return (mark == (NOW2 - DEFAULT_LAG).isoformat()
                and not list(self.lake.list_objects(f"_extraction/{target.PREFIX}")))

    def check_final(self) -> None:
        assert_exactly_once(self.lake, self.engine, self.tables, NOW2 - DEFAULT_LAG)
        assert not list(self.lake.list_objects("_extraction"))
        assert protocol.visible_files(self.lake, target.PREFIX)


@pytest.fixture(scope="module")
def runner(zygote_factory):
    return zygote_factory("tests.crash.tag_export_target")


def _case(tmp_path: Path) -> TagExportCase:
    return TagExportCase(tmp_path, f"sqlite+pysqlite:///{tmp_path / 'warehouse.db'}")


def test_export_killed_mid_publish_then_before_watermark_then_recovered(runner, tmp_path):
    case = _case(tmp_path)
    report = run_schedule(runner, case, Schedule(0, (Kill("mid_publish"),
                                                     Kill("before_watermark"),
                                                     Kill("after_commit"))))
    assert all(o.killed for o in report.outcomes)
    assert report.recovery_runs == 1


@pytest.mark.parametrize("seed", seeds(default_count=4, salt=7))
def test_seeded_tag_export_crash_schedules_hold(seed, runner, tmp_path):
    run_schedule(runner, _case(tmp_path), draw_schedule(seed, POINTS, max_delay=1.0))
