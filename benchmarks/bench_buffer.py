"""Store and forward benchmark (not a test): what the buffer costs the capture loop, and
how fast a backlog drains into PostgreSQL.

1. Capture: ``--devices`` simulated devices x 20 float32 tags, ``--samples`` slots each
   taken back to back (no pacing: the loop's own work only), every device in its own
   thread as the flow does. Baseline: the direct path (validation + upsert into
   ``temperature_raw`` in batches of 12 slots, an hourly run's batch at 5 s). With the
   buffer: every sample committed to the collector's SQLite buffer (one transaction per
   sample) while the warehouse forwarder drains it beside the capture. Rounds interleaved;
   the figure is the ratio of the capture loops' wall time.
2. Drain: ``--backlog`` samples (100 devices) in a buffer, forwarded into an empty
   ``temperature_raw`` by the warehouse forwarder (read, checksum, decode, validate,
   COPY-staged upsert, cursor moves), against a bare ``COPY`` of the same rows (prepared
   in memory beforehand) into an empty ``temperature_raw``.

Run: ``.venv/bin/python benchmarks/bench_buffer.py [--devices 5] [--samples 300]
[--rounds 3] [--backlog 1000000]``; needs PostgreSQL on 127.0.0.1:5432
(``SHOPFLOOR_BENCH_PG_URL``).
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from shopfloor.buffer.store import Limits, SampleBuffer
from shopfloor.db.bulk import bulk_insert
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.modbus.buffered import (
    WAREHOUSE,
    BufferSink,
    Forwarder,
    ForwardLoop,
    config_json,
    encode,
    group_of,
)
from shopfloor.modbus.capture import CaptureStats, capture_device
from shopfloor.modbus.client import DeviceConfig, device_plan
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec, parse_register_map

# The test helpers live in the repository's tests/: importable when run as written
# (`.venv/bin/python benchmarks/...`), without PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_port  # noqa: E402

SINK = "warehouse:bench"


def tags20() -> list[TagSpec]:
    """20 float32 tags in one block; the first three land in temperature_raw's columns."""
    entries = [{"name": f"f{i:02d}", "column": f"f{i:02d}", "address": 2 * i,
                "data_type": "float32", "min_value": -1e9, "max_value": 1e9}
               for i in range(20)]
    for i, c in enumerate(("temperature", "humidity", "pcv_temperature")):
        entries[i]["column"] = c
    return parse_register_map(entries)


@contextmanager
def database() -> Iterator[tuple[Engine, Tables]]:
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"bench_buffer_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(server).set(database=name))
    try:
        yield engine, init_db(engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed(workers: list[Callable[[], None]]) -> float:
    threads = [threading.Thread(target=w) for w in workers]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def capture_round(cfgs: list[DeviceConfig], samples: int, engine: Engine, tables: Tables,
                  buffered: bool, folder: Path) -> tuple[float, float]:
    """(capture wall s, drain s after the capture) of one round."""
    anchor = 1_800_000_000.0 + time.time() % 1_000_000  # fresh keys every round
    if not buffered:
        def direct(cfg: DeviceConfig) -> Callable[[], None]:
            stats = CaptureStats(cfg.name)
            sink = ReadingSink(cfg, stats, "bench", engine=engine, tables=tables)
            return lambda: capture_device(cfg, samples, 0.001, anchor, sink, stats=stats,
                                          per_batch=12, clock=lambda: 0.0,
                                          sleep=lambda s: None)
        return timed([direct(c) for c in cfgs]), 0.0
    buf = SampleBuffer(folder / f"{uuid.uuid4().hex}.sqlite3")
    for cfg in cfgs:
        buf.put_device(cfg.name, config_json(cfg))
        buf.register_sink(SINK, cfg.name)
    loop = ForwardLoop(Forwarder(WAREHOUSE, SINK, buf, lambda c: ReadingSink(
        c, CaptureStats(c.name), "bench", engine=engine, tables=tables))).start()

    def into_buffer(cfg: DeviceConfig) -> Callable[[], None]:
        stats = CaptureStats(cfg.name)
        sink = BufferSink(cfg, stats, "bench", buf, group_of(0.001, samples))
        return lambda: capture_device(cfg, samples, 0.001, anchor, sink, stats=stats,
                                      per_batch=12, clock=lambda: 0.0, sleep=lambda s: None,
                                      on_sample=sink.take)

    wall = timed([into_buffer(c) for c in cfgs])
    loop.stop()
    t0 = time.perf_counter()
    assert loop.drain(600)
    drain = time.perf_counter() - t0
    buf.close()
    return wall, drain


def bench_capture(devices: int, samples: int, rounds: int) -> None:
    tags = tags20()
    sims = [SimulatedDevice(free_port(), tags, phase=i) for i in range(devices)]
    cfgs = [DeviceConfig(name=f"bench-{i}", loc_id=f"B{i}", tags=tuple(tags), port=s.port,
                         district="B") for i, s in enumerate(sims)]
    times: dict[bool, list[float]] = {False: [], True: []}
    drains = []
    with ModbusSimulator(sims), database() as (engine, tables), \
            tempfile.TemporaryDirectory() as tmp:
        capture_round(cfgs, 20, engine, tables, False, Path(tmp))  # warm up
        capture_round(cfgs, 20, engine, tables, True, Path(tmp))
        for r in range(rounds):
            for buffered in ((False, True) if r % 2 == 0 else (True, False)):
                wall, drain = capture_round(cfgs, samples, engine, tables, buffered, Path(tmp))
                times[buffered].append(wall)
                if buffered:
                    drains.append(drain)
    direct, buffered = statistics.median(times[False]), statistics.median(times[True])
    n = devices * samples
    print(f"capture, {devices} devices x 20 tags x {samples} slots, median of {rounds}:")
    print(f"  direct to the warehouse: {direct:.2f} s ({n / direct:,.0f} samples/s)")
    print(f"  into the buffer:         {buffered:.2f} s ({n / buffered:,.0f} samples/s), "
          f"forwarder still draining after the capture: {statistics.median(drains):.2f} s")
    print(f"  buffer cost: {100 * (buffered / direct - 1):+.1f} % of the capture loop's time")


def fill_backlog(buf: SampleBuffer, cfgs: list[DeviceConfig], per_device: int) -> None:
    """``per_device`` samples of every device, as capture would have read them."""
    plan = device_plan(cfgs[0])
    rng = np.random.default_rng(7)
    start = 1_800_000_000_000
    for cfg in cfgs:
        buf.put_device(cfg.name, config_json(cfg))
        buf.register_sink(SINK, cfg.name)
        for first in range(0, per_device, 10_000):
            n = min(10_000, per_device - first)
            values = rng.uniform(0, 50, (n, len(cfg.tags))).astype(">f4")
            # float32 big-endian words, as the simulator serves an ABCD float32 map
            words = values.view(">u2").astype(int).reshape(n, -1).tolist()
            buf.append(cfg.name, "bench", [
                (start + (first + i) * 1000, 0, encode(plan, {0: words[i]}), None)
                for i in range(n)])


def bench_drain(total: int) -> None:
    tags = tags20()
    cfgs = [DeviceConfig(name=f"bench-{i}", loc_id=f"B{i:03d}", tags=tuple(tags),
                         district="B") for i in range(100)]
    per_device = total // len(cfgs)
    with tempfile.TemporaryDirectory() as tmp, database() as (engine, tables):
        buf = SampleBuffer(Path(tmp) / "drain.sqlite3", Limits(max_bytes=64 * 1024**3))
        t0 = time.perf_counter()
        fill_backlog(buf, cfgs, per_device)
        filled = time.perf_counter() - t0
        size = buf.path.stat().st_size + Path(f"{buf.path}-wal").stat().st_size
        n = per_device * len(cfgs)
        fwd = Forwarder(WAREHOUSE, SINK, buf, lambda c: ReadingSink(
            c, CaptureStats(c.name), "bench", engine=engine, tables=tables))
        t0 = time.perf_counter()
        forwarded = fwd.forward_once()
        drain = time.perf_counter() - t0
        raw = tables.temperature_raw
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(raw)) == forwarded == n
            # the same rows, for the bare COPY: read back (not timed)
            cols = [c.name for c in raw.c if c.name != "id"]
            rows = [tuple(r) for r in conn.execute(select(*(raw.c[c] for c in cols)))]
        with engine.begin() as conn:
            conn.execute(raw.delete())
        procs = [raw.c[c].type.bind_processor(engine.dialect) for c in cols]
        rows = [tuple(v if p is None or v is None else p(v) for v, p in zip(r, procs,
                                                                           strict=True))
                for r in rows]
        t0 = time.perf_counter()
        with engine.begin() as conn:
            for i in range(0, len(rows), 100_000):
                bulk_insert(conn, raw, cols, rows[i:i + 100_000])
        copy = time.perf_counter() - t0
        buf.close()
    print(f"drain of {n:,} buffered samples (100 devices x 20 tags) into PostgreSQL:")
    print(f"  buffer filled in {filled:.1f} s, {size / n:.0f} bytes/sample on disk "
          f"({size / 1024**2:.0f} MiB)")
    print(f"  forwarder: {drain:.1f} s ({n / drain:,.0f} samples/s)")
    print(f"  bare COPY of the same rows: {copy:.1f} s ({n / copy:,.0f} rows/s)")
    print(f"  drain speed / COPY speed: {copy / drain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--skip-capture", action="store_true")
    args = parser.parse_args()
    if not args.skip_capture:
        bench_capture(args.devices, args.samples, args.rounds)
    if args.backlog:
        bench_drain(args.backlog)


if __name__ == "__main__":
    main()
