"""Helpers of the plant-scale tests (test_modbus_scale.py, test_modbus_scale_soak.py): a
simulator process serving hundreds of devices, their blocks, and what reached the
warehouse or still waits in the collector's buffer."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, and_, func, select

from shopfloor.buffer.store import SampleBuffer, buffer_path, collector_name
from shopfloor.db.schema import get_tables
from shopfloor.modbus.buffered import WAREHOUSE, sink_name
from shopfloor.modbus.simulator import free_port_run, wide_map
from shopfloor.settings import shopfloor_home
from shopfloor.tags.quality import BAD, NO_ANSWER
from tests.e2e.servers import ROOT, stop

TAGS = 20


@contextmanager
def simulated_plant(tmp_path: Path, devices: int, faults: Sequence[str] = (),
                    delay_seconds: float = 0.5) -> Iterator[int]:
    """``devices`` simulated devices of :data:`TAGS` float32 tags in one simulator
    process; yields the first device's port (device i listens on port + i).
    ``faults``: the simulator's ``DEVICE=KIND`` (1-based), ``delay_seconds`` the answer
    delay of its ``delay`` devices."""
    map_file = tmp_path / "wide.json"
    map_file.write_text(json.dumps({"tags": [t.model_dump(exclude_none=True)
                                             for t in wide_map(TAGS)]}))
    port = free_port_run(devices)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fault_args = [arg for spec in faults for arg in ("--fault", spec)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "simulate", "modbus", "--port", str(port),
         "--devices", str(devices), "--map", str(map_file),
         "--delay-seconds", str(delay_seconds), *fault_args],
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


def device_blocks(port: int, devices: int, prefix: str) -> list[str]:
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


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


def warehouse_slots(engine: Engine, names: list[str]) -> dict[str, list[datetime]]:
    """Every ``temperature_raw`` row's capture time per device (a list: a slot written
    twice would show twice)."""
    t = get_tables().temperature_raw
    found: dict[str, list[datetime]] = {name: [] for name in names}
    by_loc = {name.upper(): name for name in names}
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.loc_id, t.c.capture_dt)
                            .where(t.c.loc_id.in_(list(by_loc)))).all()
    for loc_id, dt in rows:
        found[by_loc[loc_id]].append(_utc(dt))
    return found


def buffered_slots(names: list[str], target_db: str) -> dict[str, list[datetime]]:
    """The slots of every device still waiting in the collector's buffer for the
    warehouse (answered samples and no-answer ones alike)."""
    found: dict[str, list[datetime]] = {name: [] for name in names}
    buffer = SampleBuffer(buffer_path(shopfloor_home(), collector_name()))
    try:
        for name in names:
            for r in buffer.pending(sink_name(WAREHOUSE, target_db), name, 1_000_000):
                found[name].append(datetime.fromtimestamp(r.capture_ms / 1000, UTC)
                                   .replace(tzinfo=None))
    finally:
        buffer.close()
    return found


def found_slots(engine: Engine, names: list[str], target_db: str) -> dict[str, set]:
    """The capture times of every device's samples: in the warehouse, or still waiting
    in the collector's buffer."""
    found = {name: set(v) for name, v in warehouse_slots(engine, names).items()}
    for name, slots in buffered_slots(names, target_db).items():
        found[name].update(slots)
    return found


def no_answer_points(engine: Engine, devices: list[str]) -> dict[str, dict[datetime, int]]:
    """Per device (block name), the ``tag_samples`` points marked bad with reason ``no
    answer``: how many per slot (one per tag of the map is the rule)."""
    tags, s = get_tables().tags, get_tables().tag_samples
    out: dict[str, dict[datetime, int]] = {d: {} for d in devices}
    with engine.connect() as conn:
        rows = conn.execute(
            select(tags.c.device, s.c.ts, func.count())
            .select_from(s.join(tags, s.c.tag_id == tags.c.id))
            .where(and_(tags.c.device.in_(devices), s.c.reason == NO_ANSWER,
                        s.c.quality == BAD, s.c.value.is_(None)))
            .group_by(tags.c.device, s.c.ts)).all()
    for device, ts, n in rows:
        out[device][_utc(ts)] = n
    return out


def tag_points(engine: Engine, devices: list[str]) -> dict[str, int]:
    """Every ``tag_samples`` point per device (block name), any quality."""
    tags, s = get_tables().tags, get_tables().tag_samples
    with engine.connect() as conn:
        rows = conn.execute(
            select(tags.c.device, func.count())
            .select_from(s.join(tags, s.c.tag_id == tags.c.id))
            .where(tags.c.device.in_(devices)).group_by(tags.c.device)).all()
    return {d: 0 for d in devices} | dict(rows)
