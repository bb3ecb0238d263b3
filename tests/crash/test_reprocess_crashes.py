"""reprocess-raw under chains of kill -9, then one rerun: raw rows, quarantine, hourly
rows and landed objects end exactly as one uninterrupted run leaves them; in between a
reader sees each landed object whole (old or new) and the raw rows of the window all old
or all new. Backs the "idempotent, a rerun repairs" promise of docs/modbus.md."""

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from sqlalchemy import Engine, delete, insert, select

from shopfloor.db.schema import get_tables
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice, default_map
from tests.conftest import free_port

from .conftest import META
from .harness import Kill, Schedule, draw_schedule, run_schedule, seeds

DEVICE, LOC, RAW_BLOCK = "crash-rp", "LOC-crp", "crash-rp-raw"
POINTS = ("after_commit", "mid_rewrite", "after_publish")


def _rows(engine: Engine) -> dict[str, list[dict]]:
    t = get_tables()
    with engine.connect() as conn:
        return {
            "raw": [dict(r._mapping) for r in conn.execute(
                select(t.temperature_raw).where(t.temperature_raw.c.loc_id == LOC)
                .order_by(t.temperature_raw.c.capture_dt))],
            "quarantine": [dict(r._mapping) for r in conn.execute(
                select(t.quarantine).where(t.quarantine.c.source == f"modbus:{DEVICE}"))],
            "hourly": [dict(r._mapping) for r in conn.execute(
                select(t.temperature_hourly).where(t.temperature_hourly.c.loc_id == LOC))],
        }


def _comparable(rows: dict[str, list[dict]], landed: dict[str, bytes]) -> dict:
    """What must match an uninterrupted run: values, not the times a run stamps."""
    stamp = {"ingested_at", "updated_at", "quarantined_at", "run_id", "id"}
    keep = {name: sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k not in stamp))
                          for r in rs) for name, rs in rows.items()}
    return {**keep, "landed": landed}


def _landed(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


class ReprocessCase:
    target = "flows.reprocess:reprocess_raw"
    min_recovery_runs = 1  # reprocess has no backlog: one clean rerun is the recovery

    def __init__(self, engine: Engine, root: Path, snapshot: dict, expected: dict,
                 window: tuple[str, str]) -> None:
        self.engine, self.root, self.window = engine, root, window
        self.old, self.expected = snapshot, expected

    def kwargs(self, taking_over: bool) -> dict:
        return {"start": self.window[0], "end": self.window[1], "devices": [DEVICE],
                "raw_logs": RAW_BLOCK, "target_db": META, "hourly_source_db": META,
                "hourly_target_db": META}

    def check_visible(self, when: str) -> None:
        landed = _landed(self.root)
        assert set(landed) == set(self.old["landed"]), f"{when}: objects appeared or vanished"
        for key, body in landed.items():
            assert body in (self.old["landed"][key], self.expected["landed"][key]), (
                f"{when}: landed object {key} is neither its old nor its new body")
            [json.loads(line) for line in body.splitlines()]
        raw = _comparable(_rows(self.engine), {})["raw"]
        assert raw in (self.old["raw"], self.expected["raw"]), f"{when}: raw rows mixed"

    def done(self) -> bool:
        return True

    def check_final(self) -> None:
        assert _comparable(_rows(self.engine), _landed(self.root)) == self.expected


def _restore(engine: Engine, rows: dict[str, list[dict]], root: Path, landed: Path) -> None:
    t = get_tables()
    with engine.begin() as conn:
        conn.execute(delete(t.temperature_raw).where(t.temperature_raw.c.loc_id == LOC))
        conn.execute(delete(t.quarantine).where(t.quarantine.c.source == f"modbus:{DEVICE}"))
        conn.execute(delete(t.temperature_hourly).where(t.temperature_hourly.c.loc_id == LOC))
        for name, table in (("raw", t.temperature_raw), ("hourly", t.temperature_hourly)):
            if rows[name]:
                conn.execute(insert(table), rows[name])
        if rows["quarantine"]:
            conn.execute(insert(t.quarantine),
                         [{k: v for k, v in r.items() if k != "id"} for r in rows["quarantine"]])
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(landed, root)


@pytest.fixture(scope="module")
def world(tmp_path_factory, meta_block, pg_engine, zygote_factory):
    """Readings captured and landed once, aggregated; then the device's limit lowered.
    Returns (restore, snapshot, expected, window, runner)."""
    from blocks.modbus import ModbusDevice
    from flows.hourly_aggregation import hourly_aggregation
    from flows.modbus_capture import modbus_capture

    base = tmp_path_factory.mktemp("crash-rp")
    root, saved = base / "raw", base / "saved"
    LocalFileSystem(basepath=str(root)).save(RAW_BLOCK, overwrite=True)
    device = SimulatedDevice(free_port(), default_map())
    with ModbusSimulator([device]):
        block = ModbusDevice(host="127.0.0.1", port=device.port, loc_id=LOC, district="D9",
                             timeout_seconds=0.5, retries=1, backoff_seconds=0.05,
                             register_map=device.tags)
        block.save(DEVICE, overwrite=True)
        for _ in range(2):  # two runs: two landed objects at least
            modbus_capture([DEVICE], samples=4, interval_seconds=0.5, target_db=META,
                           land_json=True, raw_logs=RAW_BLOCK)
    rows = _rows(pg_engine)
    times = [r["capture_dt"] for r in rows["raw"]]
    start = min(times).replace(minute=0, second=0, microsecond=0)
    end = max(times) + timedelta(hours=1)
    hourly_aggregation(start=start, end=end, source_db=META, target_db=META)
    rows = _rows(pg_engine)
    shutil.copytree(root, saved)
    temps = sorted(r["temperature"] for r in rows["raw"])
    block.register_map = [t.model_copy(update={"max_value": temps[len(temps) // 2]})
                          if t.column == "temperature" else t for t in block.register_map]
    block.save(DEVICE, overwrite=True)
    window = (start.isoformat(), end.isoformat())
    runner = zygote_factory("flows.reprocess")

    def restore() -> None:
        _restore(pg_engine, rows, root, saved)

    restore()
    snapshot = _comparable(_rows(pg_engine), _landed(root))
    out = runner.run(ReprocessCase.target, ReprocessCase(pg_engine, root, {}, {}, window)
                     .kwargs(False))
    assert out.status == 0, runner.log_tail()
    expected = _comparable(_rows(pg_engine), _landed(root))
    assert expected["landed"] != snapshot["landed"] and expected["raw"] != snapshot["raw"]
    return restore, snapshot, expected, window, runner, root


def _case(world, pg_engine) -> tuple[ReprocessCase, object]:
    restore, snapshot, expected, window, runner, root = world
    restore()
    return ReprocessCase(pg_engine, root, snapshot, expected, window), runner


def test_reprocess_killed_after_its_commit_and_mid_rewrite_then_rerun(world, pg_engine):
    case, runner = _case(world, pg_engine)
    report = run_schedule(runner, case, Schedule(0, (Kill("after_commit"),
                                                     Kill("mid_rewrite"))))
    assert [o.killed for o in report.outcomes] == [True, True]


@pytest.mark.parametrize("seed", seeds(default_count=1, salt=3))
def test_seeded_reprocess_crash_schedules_hold(seed, world, pg_engine):
    case, runner = _case(world, pg_engine)
    run_schedule(runner, case, draw_schedule(seed, POINTS, max_delay=2.0))
