"""Store and forward's forwarders for the crash harness: a collector's buffer drained
into the warehouse (PostgreSQL) and the landing (a folder) by the flow's own
:class:`~shopfloor.modbus.buffered.Forwarder`, until nothing is pending."""

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shopfloor.buffer.store import SampleBuffer
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.modbus.batch import epoch_ms
from shopfloor.modbus.buffered import (
    LANDING,
    WAREHOUSE,
    Forwarder,
    config_json,
    encode,
    group_of,
)
from shopfloor.modbus.capture import CaptureStats
from shopfloor.modbus.client import DeviceConfig, device_plan
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec
from shopfloor.storage import StorageLocation

DEVICE, LOC, RUN = "crash-fwd", "LOC-cfwd", "crash-fwd-run"
WAREHOUSE_SINK, LANDING_SINK = "warehouse:crash", "landing:crash"
# Recent (the buffer's age limit drops week-old samples), on a minute: fixed per process,
# and only the test's process uses it (the children read the buffer).
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
SAMPLES = 300  # one a second: six landing batches, two hours
HOT = {17, 101, 250}  # samples above the limit: rejected, quarantined, landed as such
# Samples the device did not answer at all: no reading, a "no answer" point per tag
# (120 is the first slot of a landing batch: the object is named by the next one).
LOST = {40, 41, 120}
CFG = DeviceConfig(name=DEVICE, loc_id=LOC, district="D9", tags=(
    TagSpec(name="t", column="temperature", address=0, data_type="float32", max_value=100),
    TagSpec(name="h", column="humidity", address=2)))


def capture_times() -> list[datetime]:
    return [START + timedelta(seconds=k) for k in range(SAMPLES)]


def fill(path: Path) -> None:
    """A backlog of :data:`SAMPLES` samples for both sinks, its run ended."""
    buffer = SampleBuffer(path)
    buffer.put_device(DEVICE, config_json(CFG))
    for sink in (WAREHOUSE_SINK, LANDING_SINK):
        buffer.register_sink(sink, DEVICE)
    buffer.start_run(RUN)
    plan, group = device_plan(CFG), group_of(1.0, SAMPLES)
    rows = []
    for k, at in enumerate(capture_times()):
        value = 500.0 if k in HOT else 20.0 + k / 100
        words = list(struct.unpack(">HH", struct.pack(">f", value))) + [40 + k % 10]
        ms = epoch_ms(at)
        rows.append((ms, group(ms, k), encode(plan, {} if k in LOST else {0: words}), None))
    buffer.append(DEVICE, RUN, rows)
    buffer.end_run(RUN)
    buffer.close()


def run(buffer: str, pg_url: str, landing: str) -> None:
    """Forward to both sinks until nothing is pending (what a capture run's forwarders
    do with an older backlog)."""
    store = SampleBuffer(Path(buffer))
    engine, tables = make_engine(pg_url), get_tables()
    storage = StorageLocation("local", landing)
    fault = pause_hook_from_env() or (lambda step: None)
    forwarders = [
        Forwarder(WAREHOUSE, WAREHOUSE_SINK, store, lambda cfg: ReadingSink(
            cfg, CaptureStats(cfg.name), RUN, engine=engine, tables=tables), fault),
        Forwarder(LANDING, LANDING_SINK, store, lambda cfg: ReadingSink(
            cfg, CaptureStats(cfg.name), RUN, storage=storage), fault)]
    while sum(f.forward_once() for f in forwarders):
        pass
    store.close()
