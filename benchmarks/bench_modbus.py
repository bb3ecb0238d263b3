"""Modbus capture benchmark (not a test): planning and the capture path vs bare pymodbus.

5 devices x 60 tags in three contiguous blocks, 200 samples per device, served by
``shopfloor simulate modbus`` in another process. Prints:

- requests per sample: planned reads vs one read per tag;
- samples/s of the capture path (planned reads + decoding + pandera validation, the code
  the flow's task runs, without the database) vs a bare pymodbus loop issuing the same
  planned reads and decoding nothing. Each device polls in its own thread in both.

``--hour`` replays a one-hour scheduled run compressed: 720 slots per device (an hour
at 5 s) taken back to back, cut into the 12-slot batches an hour's run lands (one a
minute), through the whole per-sample path of a scheduled run (circuit breaker, the
gateway lock around every poll, decoding, validation).

Run: ``.venv/bin/python benchmarks/bench_modbus.py [--samples 200] [--rounds 3] [--hour]``
"""

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from pymodbus.client import ModbusTcpClient

from shopfloor.modbus.capture import CaptureStats, capture_device
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.planning import ReadRequest, plan_requests
from shopfloor.modbus.simulator import free_port_run
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec, parse_register_map

DEVICES = 5
READERS = {"holding": "read_holding_registers", "input": "read_input_registers"}


def bench_map() -> list[TagSpec]:
    """60 tags: 20 float32 (holding 0-39), 20 scaled uint16 (holding 100-119),
    20 int32 CDAB (input 0-39); the first three land in temperature_raw's columns."""
    entries = []
    for i in range(20):
        entries.append({"name": f"f{i:02d}", "column": f"f{i:02d}", "address": 2 * i,
                        "data_type": "float32", "min_value": -50, "max_value": 150})
        entries.append({"name": f"u{i:02d}", "column": f"u{i:02d}", "address": 100 + i,
                        "data_type": "uint16", "scale": 0.1, "min_value": 0, "max_value": 100})
        entries.append({"name": f"i{i:02d}", "column": f"i{i:02d}", "register_type": "input",
                        "address": 2 * i, "data_type": "int32", "byte_order": "CDAB",
                        "scale": 0.01, "min_value": -100, "max_value": 200})
    entries[0]["column"], entries[1]["column"], entries[2]["column"] = (
        "temperature", "humidity", "pcv_temperature")
    return parse_register_map(entries)


def _wait(port: int, sim: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sim.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"simulator did not come up on {port}")


def bare_loop(port: int, plan: list[ReadRequest], samples: int) -> None:
    # the same client settings the capture uses (make_client), so only our code differs
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=3.0, retries=0, reconnect_delay=0)
    client.connect()
    for _ in range(samples):
        for req in plan:
            resp = getattr(client, READERS[req.register_type])(req.address, count=req.count,
                                                               device_id=1)
            assert not resp.isError()
    client.close()


PER_BATCH: int | None = None  # --hour: 12, the batches of an hour's run at 5 s


def capture_path(cfg: DeviceConfig, samples: int, fast: bool = True) -> None:
    stats = CaptureStats(cfg.name)
    sink = ReadingSink(cfg, stats, "bench", fast=fast)  # validates; no database, no landing
    capture_device(cfg, samples, 0.0, time.time(), sink, stats=stats, per_batch=PER_BATCH)
    assert stats.samples_ok == samples and stats.rows_valid == samples, stats.as_row()


CPU: dict[str, list[float]] = {}


def timed(workers: list[Callable[[], None]], key: str = "") -> float:
    """Wall seconds for all workers in parallel threads; this process' CPU seconds are
    kept in ``CPU[key]`` (less sensitive to other load on the machine than wall time)."""
    threads = [threading.Thread(target=w) for w in workers]
    cpu, start = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    CPU.setdefault(key, []).append(time.process_time() - cpu)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hour", action="store_true",
                        help="an hour's run at 5 s: 720 samples in batches of 12")
    args = parser.parse_args()
    if args.hour:
        global PER_BATCH
        PER_BATCH, args.samples = 12, 720
    tags = bench_map()
    plan = plan_requests(tags)
    port = free_port_run(DEVICES)
    with tempfile.TemporaryDirectory() as tmp:
        map_file = Path(tmp, "bench-map.yaml")
        map_file.write_text(yaml.safe_dump([t.model_dump() for t in tags]))
        shopfloor = str(Path(sys.executable).with_name("shopfloor"))
        sim = subprocess.Popen([shopfloor, "simulate", "modbus", "--port", str(port), "--devices",
                                str(DEVICES), "--map", str(map_file)],
                               stdout=subprocess.DEVNULL)
        try:
            _wait(port + DEVICES - 1, sim)
            run(tags, plan, port, args.samples, args.rounds)
        finally:
            sim.terminate()
            sim.wait(10)


def run(tags: list[TagSpec], plan: list[ReadRequest], port: int, samples: int,
        rounds: int) -> None:
    print(f"{DEVICES} devices x {len(tags)} tags, {samples} samples each, {rounds} rounds, "
          f"batches of {PER_BATCH or 'all'}")
    print(f"requests per sample per device: planned {len(plan)} vs one per tag {len(tags)} "
          f"-> {len(tags) / len(plan):.1f}x fewer")
    cfgs = [DeviceConfig(f"bench-{i}", f"B{i}", tuple(tags), port=port + i)
            for i in range(DEVICES)]
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: timed([lambda p=port + i: bare_loop(p, plan, samples)
                               for i in range(DEVICES)], "bare"),
        "flow": lambda: timed([lambda c=c: capture_path(c, samples) for c in cfgs], "flow"),
        "full": lambda: timed([lambda c=c: capture_path(c, samples, fast=False)
                               for c in cfgs], "full"),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    for r in range(rounds):  # interleaved and rotated, so machine noise hits all alike
        for key in order[r % 3:] + order[:r % 3]:
            times[key].append(runs[key]())
    total = DEVICES * samples
    for key, label in (("bare", "bare pymodbus loop (planned reads, no decoding)"),
                       ("flow", "capture path (reads + decode + validation)"),
                       ("full", "  same, every row through pandera (fast=False)")):
        print(f"{label:<50} best {total / min(times[key]):7.1f}  median "
              f"{total / statistics.median(times[key]):7.1f} samples/s, client CPU "
              f"{1e6 * statistics.median(CPU[key]) / total:6.0f} us/sample")
    for stat_name, stat in (("best", min), ("median", statistics.median)):
        b, f, p = (stat(times[k]) for k in ("bare", "flow", "full"))
        print(f"capture path / bare loop ({stat_name}): {b / f:.2f}x "
              f"(pandera on every row: {b / p:.2f}x)")

if __name__ == "__main__":
    main()
