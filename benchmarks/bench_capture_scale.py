"""Plant-scale capture benchmark (not a test): devices one worker holds on a 1 s grid.

``shopfloor simulate modbus`` serves the devices (20 float32 tags each, one read of 40
registers per sample) in a process of its own, pinned to the second CPU. For each
device count, three paths run in turn, each in a fresh process pinned to the first CPU
(one worker on one core), for ``--seconds`` slots of 1 s:

- ``bare``: a bare asyncio pymodbus loop: an ``AsyncModbusTcpClient`` per device, a
  coroutine per device sleeping until its slot and issuing the same planned read;
- ``engine``: the capture engine (``shopfloor.modbus.engine.capture_devices``) with the
  flow's per-device settings (breaker, gateway locks, retries), decoding and judging
  each device's batch, no store;
- ``engine+buffer``: the same with every sample committed to a collector's SQLite buffer
  (``BufferSink.take``, one transaction per sample), as the flow does with store and
  forward (the forwarders, which drain it in the flow, are not running).

A slot counts when its read answered before the next slot. A path *holds* a device
count when at least 99.9 % of its slots count. Printed per count and path: slots held,
the worker's CPU use (CPU seconds per wall second: 1.0 is the whole core) and CPU per
device-sample. The figure asked for: the largest count the engine holds over the largest
the bare loop holds (goal: at least 0.9); and, since on two shared cores one simulator
process runs out before a worker does, the devices one core could hold from the
worker's CPU per device-sample.

Run: ``.venv/bin/python benchmarks/bench_capture_scale.py [--devices 250,500,1000,1500]
[--seconds 20]``
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELD = 0.999
PATHS = ("bare", "engine", "engine+buffer")
TAGS = 20


def _pin(cpu: int) -> None:
    """Run on one CPU (when the machine has it), so the figures are one core's."""
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _configs(port: int, n: int) -> list:
    from shopfloor.modbus.client import DeviceConfig
    from shopfloor.modbus.simulator import wide_map

    tags = tuple(wide_map(TAGS))
    return [DeviceConfig(name=f"d{i:04d}", loc_id=f"L{i:04d}", tags=tags, port=port + i,
                         timeout_seconds=0.5, retries=1, backoff_seconds=0.05)
            for i in range(n)]


async def _bare(port: int, n: int, seconds: int, anchor: float) -> int:
    from pymodbus.client import AsyncModbusTcpClient

    from shopfloor.modbus.client import device_plan

    plan = device_plan(_configs(port, 1)[0])
    held = 0

    async def device(i: int) -> None:
        nonlocal held
        client = AsyncModbusTcpClient("127.0.0.1", port=port + i, timeout=0.5, retries=0,
                                      reconnect_delay=0)
        for k in range(seconds):
            due = anchor + k
            late = time.time() - due
            if late < 0:
                await asyncio.sleep(-late)
            elif late >= 1.0:
                continue  # a whole slot late: skipped
            try:
                if not client.connected:
                    await client.connect()
                ok = True
                for req in plan:
                    r = await client.read_holding_registers(req.address, count=req.count,
                                                            device_id=1)
                    ok = ok and not r.isError()
            except Exception:  # noqa: BLE001 - a failed slot, counted as not held
                client.close()
                continue
            if ok and time.time() < due + 1.0:
                held += 1
        client.close()

    await asyncio.gather(*[device(i) for i in range(n)])
    return held


def _engine(port: int, n: int, seconds: int, anchor: float, buffered: bool) -> int:
    from shopfloor.buffer.store import SampleBuffer
    from shopfloor.modbus.buffered import BufferSink, config_json, group_of
    from shopfloor.modbus.capture import CaptureStats
    from shopfloor.modbus.engine import DeviceJob, capture_devices

    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        buffer = SampleBuffer(Path(tmp, "bench.sqlite3")) if buffered else None
        if buffer is not None:
            buffer.start_run("bench")
        for cfg in _configs(port, n):
            stats = CaptureStats(cfg.name)
            if buffer is not None:
                buffer.put_device(cfg.name, config_json(cfg))
                sink = BufferSink(cfg, stats, "bench", buffer, group_of(1.0, seconds))
                jobs.append(DeviceJob(cfg, sink, stats, sink.take))
            else:
                jobs.append(DeviceJob(cfg, lambda batch: None, stats))
        results = capture_devices(jobs, seconds, 1.0, anchor)
        if buffer is not None:
            assert buffer.count() == sum(s.samples_ok for s in results)
            buffer.close()
    # samples_ok: answered inside the slot's budget (a later answer misses the next slot)
    return sum(s.samples_ok for s in results)


def child(path: str, port: int, n: int, seconds: int) -> None:
    """One measurement, in this (pinned) process: prints a JSON line."""
    _pin(0)
    # Imported before the clock starts: the engine path's imports (pandas, pandera,
    # SQLite) would otherwise count as CPU per sample against the bare loop's.
    import pymodbus.client  # noqa: F401

    import shopfloor.buffer.store  # noqa: F401
    import shopfloor.modbus.buffered  # noqa: F401
    import shopfloor.modbus.engine  # noqa: F401
    from shopfloor.modbus.capture import schedule_anchor

    anchor = schedule_anchor(1.0, time.time() + 1.0)
    cpu, wall = time.process_time(), time.time()
    if path == "bare":
        held = asyncio.run(_bare(port, n, seconds, anchor))
    else:
        held = _engine(port, n, seconds, anchor, buffered=path == "engine+buffer")
    cpu, wall = time.process_time() - cpu, time.time() - wall
    print(json.dumps({"path": path, "devices": n, "slots": n * seconds, "held": held,
                      "cpu": cpu, "wall": wall}))


def _wait(port: int, sim: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sim.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"simulator did not come up on {port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="250,500,1000,1500")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--child", choices=PATHS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, args.n, args.seconds)
        return
    from shopfloor.modbus.simulator import free_port_run, wide_map

    counts = [int(c) for c in args.devices.split(",")]
    port = free_port_run(max(counts))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as tmp:
        map_file = Path(tmp, "wide.json")
        map_file.write_text(json.dumps({"tags": [t.model_dump(exclude_none=True)
                                                 for t in wide_map(TAGS)]}))
        sim = subprocess.Popen(
            [sys.executable, "-c", "import os,sys; os.sched_setaffinity(0, {1}) "
             "if (os.cpu_count() or 1) > 1 else None; from deployments.cli import main; "
             "sys.argv[0] = 'shopfloor'; main()", "simulate", "modbus", "--port", str(port),
             "--devices", str(max(counts)), "--map", str(map_file)],
            env=env, cwd=root, stdout=subprocess.DEVNULL)
        try:
            _wait(port + max(counts) - 1, sim)
            _measure(counts, args.seconds, port, env, root)
        finally:
            sim.terminate()
            sim.wait(30)


def _measure(counts: list[int], seconds: int, port: int, env: dict, root: Path) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"{TAGS} float32 tags a device, {seconds} slots of 1 s")
    print("| devices | path | slots held | held % | worker CPU use | CPU per sample |")
    print("|---|---|---|---|---|---|")
    best: dict[str, int] = {}
    cpu: dict[str, list[float]] = {}  # CPU seconds per device-sample, where held
    for n in counts:
        for path in PATHS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", path, "--port", str(port), "--n", str(n),
                 "--seconds", str(seconds)], env=env, cwd=root, capture_output=True,
                text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            share = r["held"] / r["slots"]
            if share >= HELD:
                best[path] = max(best.get(path, 0), n)
                cpu.setdefault(path, []).append(r["cpu"] / r["slots"])
            print(f"| {n} | {path} | {r['held']}/{r['slots']} | {100 * share:.2f} | "
                  f"{r['cpu'] / r['wall']:.2f} | {1e6 * r['cpu'] / r['slots']:.0f} us |",
                  flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    bare = best.get("bare", 0)
    for path in PATHS[1:]:
        ratio = best.get(path, 0) / bare if bare else float("nan")
        print(f"largest count held: {path} {best.get(path, 0)} vs bare {bare}: {ratio:.2f}x")
    # What one core could hold if the devices (here: one simulator process) kept up:
    # 1 s of CPU over the worker's CPU per device-sample.
    per = {p: sum(v) / len(v) for p, v in cpu.items()}
    for path in PATHS:
        if path in per:
            print(f"{path}: {1e6 * per[path]:.0f} us CPU per device-sample where held, "
                  f"one core at 1 s: about {1 / per[path]:.0f} devices"
                  + (f" ({per['bare'] / per[path]:.2f}x bare)" if 'bare' in per else ""))


if __name__ == "__main__":
    main()
