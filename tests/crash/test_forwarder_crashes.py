"""Store and forward's forwarders under chains of kill -9, then a run that is not killed:
every buffered reading in ``temperature_raw`` (or quarantined) and in the landing exactly
once, every sample's tag points in ``tag_samples`` (a sample the device did not answer:
bad "no answer" points only), nothing left pending. After each kill: no reading twice
anywhere, every landed object whole. Backs docs/store_and_forward.md's exactly-once
forwarding and docs/tags.md's communication loss."""

import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select

from shopfloor.buffer.store import SampleBuffer
from shopfloor.db.engine import init_db
from shopfloor.db.schema import Tables

from . import forwarder_target as target
from .harness import Kill, Schedule, draw_schedule, run_schedule, seeds

POINTS = ("after_forward",)
SOURCE = f"modbus:{target.DEVICE}"
HOT_TIMES = {target.capture_times()[k] for k in target.HOT}
LOST_TIMES = {target.capture_times()[k] for k in target.LOST}
VALID = set(target.capture_times()) - HOT_TIMES - LOST_TIMES


def _at(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


class ForwarderCase:
    target = "tests.crash.forwarder_target:run"

    def __init__(self, root: Path, pg_url: str, engine: Engine, tables: Tables) -> None:
        self.root, self.pg_url, self.engine, self.tables = root, pg_url, engine, tables
        self.buffer, self.landing = root / "buffer.sqlite3", root / "landing"

    def kwargs(self, taking_over: bool) -> dict:
        return {"buffer": str(self.buffer), "pg_url": self.pg_url,
                "landing": str(self.landing)}

    def _seen(self) -> tuple[list[datetime], list[datetime], list[datetime]]:
        raw, q = self.tables.temperature_raw, self.tables.quarantine
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(raw.c.capture_dt).where(raw.c.loc_id == target.LOC))
                        .scalars())
            quarantined = [_at(json.loads(r)["capture_dt"]) for r in conn.execute(
                select(q.c.record).where(q.c.source == SOURCE)).scalars()]
        landed = []
        for path in sorted(self.landing.rglob("*.json")):
            for line in path.read_bytes().splitlines():
                landed.append(_at(json.loads(line)["capture_dt"]))  # a torn object raises
        return rows, quarantined, landed

    def check_visible(self, when: str) -> None:
        rows, quarantined, landed = self._seen()
        for name, seen, allowed in (("temperature_raw", rows, VALID),
                                    ("quarantine", quarantined, HOT_TIMES),
                                    ("landing", landed, set(target.capture_times()) - LOST_TIMES)):
            twice = [t for t, n in Counter(seen).items() if n > 1]
            assert not twice, f"{when}: {len(twice)} readings twice in {name}"
            assert set(seen) <= allowed, f"{when}: unexpected readings in {name}"

    def done(self) -> bool:
        buffer = SampleBuffer(self.buffer)
        try:
            return all(not buffer.pending(s, target.DEVICE, 1)
                       for s in (target.WAREHOUSE_SINK, target.LANDING_SINK))
        finally:
            buffer.close()

    def check_final(self) -> None:
        self.check_visible("final")
        rows, quarantined, landed = self._seen()
        assert set(rows) == VALID and set(quarantined) == HOT_TIMES
        assert sorted(landed) == sorted(set(target.capture_times()) - LOST_TIMES)
        points = self._points()
        assert len(points) == 2 * target.SAMPLES  # two tags, every slot, once (the key)
        lost = {(ts, q, r) for ts, q, r in points if r == "no answer"}
        assert {ts for ts, _, _ in lost} == LOST_TIMES and {q for _, q, _ in lost} == {0}

    def _points(self) -> list[tuple[datetime, int, str | None]]:
        s, tags = self.tables.tag_samples, self.tables.tags
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(s.c.ts, s.c.quality, s.c.reason)
                .select_from(s.join(tags, s.c.tag_id == tags.c.id))
                .where(tags.c.device == target.DEVICE))]


@pytest.fixture(scope="module")
def runner(zygote_factory):
    return zygote_factory("tests.crash.forwarder_target")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, pg_engine: Engine) -> Path:
    init_db(pg_engine)
    path = tmp_path_factory.mktemp("crash-fwd") / "pristine.sqlite3"
    target.fill(path)
    return path


def _fresh(tmp_path: Path, pristine: Path, pg_url: str, pg_engine: Engine) -> ForwarderCase:
    tables = init_db(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(delete(tables.temperature_raw)
                     .where(tables.temperature_raw.c.loc_id == target.LOC))
        conn.execute(delete(tables.quarantine).where(tables.quarantine.c.source == SOURCE))
        ids = select(tables.tags.c.id).where(tables.tags.c.device == target.DEVICE)
        conn.execute(delete(tables.tag_samples).where(tables.tag_samples.c.tag_id.in_(ids)))
    root = tmp_path / "collector"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    shutil.copy(pristine, root / "buffer.sqlite3")
    return ForwarderCase(root, pg_url, pg_engine, tables)


def test_forwarders_killed_between_sink_and_cursor_three_times(runner, tmp_path, pristine,
                                                               pg_url, pg_engine):
    """Each kill lands after a part reached its sink and before the cursor moved: the
    repeat must overwrite, never add."""
    case = _fresh(tmp_path, pristine, pg_url, pg_engine)
    report = run_schedule(runner, case, Schedule(0, (
        Kill("after_forward"), Kill("after_forward", 2), Kill("after_forward", 3))))
    assert all(o.killed for o in report.outcomes)


@pytest.mark.parametrize("seed", seeds(default_count=2, salt=5))
def test_seeded_forwarder_crash_schedules_hold(seed, runner, tmp_path, pristine, pg_url,
                                               pg_engine):
    case = _fresh(tmp_path, pristine, pg_url, pg_engine)
    run_schedule(runner, case, draw_schedule(seed, POINTS, max_nth=4, max_delay=1.5))
