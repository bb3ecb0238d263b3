"""modbus-capture from a line file: devices from one YAML, an edit picked up next run."""

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from shopfloor.db.schema import get_tables
from shopfloor.errors import UserError
from shopfloor.modbus.line import state_path
from shopfloor.modbus.simulator import SimulatedDevice

ROOT = Path(__file__).resolve().parents[3]


def _locations(engine: Engine) -> dict[str, int]:
    t = get_tables().temperature_raw
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.loc_id).where(t.c.loc_id.like("LINE-%"))).all()
    counts: dict[str, int] = {}
    for (loc,) in rows:
        counts[loc] = counts.get(loc, 0) + 1
    return counts


def _device(name: str, dev: SimulatedDevice, loc: str) -> str:
    transport = "rtu-over-tcp" if dev.framer == "rtu" else "tcp"
    return (f"  - {{name: {name}, port: {dev.port}, unit_id: {dev.unit_id}, "
            f"transport: {transport}, loc_id: {loc}, map: maps/sim.yaml}}\n")


def test_a_line_file_is_read_again_by_the_next_run(simulator, target_db, pg_engine,
                                                   tmp_path: Path):
    from flows.modbus_capture import modbus_capture

    (tmp_path / "maps").mkdir()
    shutil.copy(ROOT / "maps" / "simulator.yaml", tmp_path / "maps" / "sim.yaml")
    line = tmp_path / "line.yaml"
    head = ("defaults: {host: 127.0.0.1, district: D7, timeout_seconds: 0.5, retries: 1,"
            " backoff_seconds: 0.05}\n")
    line.write_text(head + "devices:\n" + _device("line-a", simulator["ok-1"], "LINE-A"),
                    encoding="utf-8")

    first = modbus_capture(samples=2, interval_seconds=0.2, target_db=target_db,
                           line_file=str(line))
    assert [(r["device"], r["rows_written"]) for r in first] == [("line-a", 2)]
    assert _locations(pg_engine) == {"LINE-A": 2}

    # the edit: a second device, and a gateway entry for the RTU device behind its port
    rtu = simulator["rtu"]
    line.write_text(head + f'gateways:\n  "127.0.0.1:{rtu.port}": {{concurrency: 1}}\n'
                    "devices:\n" + _device("line-a", simulator["ok-1"], "LINE-A")
                    + _device("line-b", simulator["ok-2"], "LINE-B")
                    + _device("line-c", rtu, "LINE-C"), encoding="utf-8")
    second = modbus_capture(samples=2, interval_seconds=0.2, target_db=target_db,
                            line_file=str(line))
    assert {r["device"]: r["rows_written"] for r in second} == {
        "line-a": 2, "line-b": 2, "line-c": 2}
    assert _locations(pg_engine) == {"LINE-A": 4, "LINE-B": 2, "LINE-C": 2}
    kept = json.loads(state_path(line).read_text(encoding="utf-8"))
    assert sorted(kept["devices"]) == ["line-a", "line-b", "line-c"]

    # a broken edit fails the next run, naming the line and the key, before any poll
    line.write_text(head + "devices:\n  - {name: line-a, loc_id: LINE-A, port: 0,"
                    " map: maps/sim.yaml}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"line.yaml: line 3: device 'line-a' port"):
        modbus_capture(samples=1, interval_seconds=0, target_db=target_db,
                       line_file=str(line))
    assert _locations(pg_engine) == {"LINE-A": 4, "LINE-B": 2, "LINE-C": 2}
