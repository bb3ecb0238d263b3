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

import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from shopfloor.db.schema import get_tables
from tests.integration.modbus.plant import device_blocks, found_slots, simulated_plant


def _capture_at_scale(tmp_path: Path, pg_engine: Engine, target_db: str, devices: int,
                      seconds: int, prefix: str) -> None:
    from flows.modbus_capture import modbus_capture

    with simulated_plant(tmp_path, devices) as port:
        names = device_blocks(port, devices, prefix)
        rows = modbus_capture(names, samples=seconds, interval_seconds=1.0,
                              target_db=target_db)
    assert isinstance(rows, list), rows  # a plain Completed run: no backlog, no trouble
    assert len(rows) == devices
    troubled = [r for r in rows if (r["samples_ok"], r["samples_failed"], r["samples_missed"],
                                    r["samples_skipped"]) != (seconds, 0, 0, 0)]
    assert not troubled, troubled[:5]
    found = found_slots(pg_engine, names, target_db)
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
