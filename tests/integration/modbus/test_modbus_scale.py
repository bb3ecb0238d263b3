"""Plant scale: one modbus-capture run polls hundreds of simulated devices.

The simulator runs as its own process (``shopfloor simulate modbus --devices N --map``),
one asyncio server per device port; the run polls every device from the capture engine's
one event loop, commits every sample to the collector's buffer and forwards it to
PostgreSQL. Every slot of every device must be found, in the warehouse or (not yet
forwarded) in the buffer.

``test_more_devices_than_threads_used_to_allow`` (80 devices, 10 s) is in the default
suite: the threaded capture refused more than 64 devices a run. The full size (500
devices of 20 tags at 1 s for 2 minutes; SHOPFLOOR_SCALE_DEVICES, SHOPFLOOR_SCALE_SECONDS
change it) is marked ``scale``: deselected by default, ``make scale`` runs it.
"""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from shopfloor.buffer.store import SampleBuffer, buffer_path, collector_name
from shopfloor.db.schema import get_tables
from shopfloor.modbus.buffered import WAREHOUSE, sink_name
from shopfloor.modbus.simulator import free_port_run, wide_map
from shopfloor.settings import shopfloor_home
from tests.e2e.servers import ROOT, stop

TAGS = 20


@contextmanager
def simulated_plant(tmp_path: Path, devices: int) -> Iterator[int]:
    """``devices`` simulated devices of :data:`TAGS` float32 tags in one simulator
    process; yields the first device's port (device i listens on port + i)."""
    map_file = tmp_path / "wide.json"
    map_file.write_text(json.dumps({"tags": [t.model_dump(exclude_none=True)
                                             for t in wide_map(TAGS)]}))
    port = free_port_run(devices)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "simulate", "modbus", "--port", str(port),
         "--devices", str(devices), "--map", str(map_file)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the simulator prints a line per device, then "serving"
            seen.append(line)
            if line.startswith("serving"):
                break
        else:
            pytest.fail("simulator did not start:\n" + "".join(seen[-20:]))
        yield port
    finally:
        stop(proc, signal.SIGINT, timeout=30)


def _blocks(port: int, devices: int, prefix: str) -> list[str]:
    """A ModbusDevice block per simulated device, ``<prefix>-0001`` ... The first is
    saved as usual (it registers the block type and schema); the others are created
    with one API call each: ``Block.save`` registers the type and schema again every
    time, which made 500 saves take minutes on a loaded machine (0.5 s vs 0.11 s each).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate

    from blocks.modbus import ModbusDevice

    def block(i: int) -> ModbusDevice:
        return ModbusDevice(host="127.0.0.1", port=port + i, loc_id=f"{prefix}-{i + 1:04d}"
                            .upper(), district="D7", timeout_seconds=0.9, retries=1,
                            backoff_seconds=0.05, register_map=wide_map(TAGS))

    names = [f"{prefix}-{i + 1:04d}" for i in range(devices)]
    first = block(0)
    first.save(names[0], overwrite=True)
    with get_client(sync_client=True) as client:
        for i, name in enumerate(names[1:], start=1):
            doc = block(i)._to_block_document(name=name, block_schema_id=first._block_schema_id,
                                              block_type_id=first._block_type_id)
            client.create_block_document(BlockDocumentCreate(
                name=name, data=doc.data, block_schema_id=doc.block_schema_id,
                block_type_id=doc.block_type_id))
    return names


def _found_slots(engine: Engine, names: list[str], target_db: str) -> dict[str, set]:
    """The capture times of every device's samples: in the warehouse, or still waiting
    in the collector's buffer."""
    t = get_tables().temperature_raw
    found: dict[str, set] = {name: set() for name in names}
    by_loc = {name.upper(): name for name in names}
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.loc_id, t.c.capture_dt)
                            .where(t.c.loc_id.in_(list(by_loc)))).all()
    for loc_id, dt in rows:
        found[by_loc[loc_id]].add(dt.replace(tzinfo=None))
    buffer = SampleBuffer(buffer_path(shopfloor_home(), collector_name()))
    try:
        for name in names:
            for r in buffer.pending(sink_name(WAREHOUSE, target_db), name, 1_000_000):
                found[name].add(datetime.fromtimestamp(r.capture_ms / 1000, UTC)
                                .replace(tzinfo=None))
    finally:
        buffer.close()
    return found


def _capture_at_scale(tmp_path: Path, pg_engine: Engine, target_db: str, devices: int,
                      seconds: int, prefix: str) -> None:
    from flows.modbus_capture import modbus_capture

    with simulated_plant(tmp_path, devices) as port:
        names = _blocks(port, devices, prefix)
        rows = modbus_capture(names, samples=seconds, interval_seconds=1.0,
                              target_db=target_db)
    assert isinstance(rows, list), rows  # a plain Completed run: no backlog, no trouble
    assert len(rows) == devices
    troubled = [r for r in rows if (r["samples_ok"], r["samples_failed"], r["samples_missed"],
                                    r["samples_skipped"]) != (seconds, 0, 0, 0)]
    assert not troubled, troubled[:5]
    found = _found_slots(pg_engine, names, target_db)
    grid = set().union(*found.values())
    assert len(grid) == seconds  # one grid shared by every device ...
    first = min(grid)
    assert grid == {first + timedelta(seconds=k) for k in range(seconds)}  # ... 1 s apart
    short = {name: len(slots) for name, slots in found.items() if slots != grid}
    assert not short, dict(list(short.items())[:5])  # every slot of every device
    with pg_engine.connect() as conn:
        t = get_tables().temperature_raw
        written = conn.execute(select(func.count()).select_from(t)
                               .where(t.c.loc_id.like(f"{prefix.upper()}-%"))).scalar_one()
    assert written <= devices * seconds  # upserts: nothing twice


def test_more_devices_than_threads_used_to_allow(tmp_path, pg_engine, target_db):
    # 80 devices in one run: the threaded capture's parameter schema refused more than 64
    _capture_at_scale(tmp_path, pg_engine, target_db, devices=80, seconds=10, prefix="sc80")


@pytest.mark.scale
def test_500_devices_of_20_tags_every_second_for_2_minutes(tmp_path, pg_engine, target_db):
    devices = int(os.environ.get("SHOPFLOOR_SCALE_DEVICES", "500"))
    seconds = int(os.environ.get("SHOPFLOOR_SCALE_SECONDS", "120"))
    _capture_at_scale(tmp_path, pg_engine, target_db, devices=devices, seconds=seconds,
                      prefix="scale")
