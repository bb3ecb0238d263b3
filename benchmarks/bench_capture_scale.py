"""Plant-scale capture benchmark (not a test): devices one worker holds on a 1 s grid on
one core, the capture engine against a bare asyncio pymodbus loop doing the same reads.

The simulator serves the devices (20 float32 tags each, one read of 40 registers a
sample) in a process of its own pinned to the second CPU; each measurement runs in a
fresh process pinned to the first CPU (one worker on one core). By default the
simulator is the light one (``shopfloor simulate modbus --light``: a minimal Modbus TCP
server, several times cheaper per request than pymodbus' own), because with pymodbus'
server the simulator's core gives out long before a client's does (``--simulator
pymodbus`` shows it). Paths:

- ``bare``: an ``AsyncModbusTcpClient`` and a coroutine per device, sleeping until its
  slot and issuing the device's planned read, nothing else;
- ``engine``: ``shopfloor.modbus.engine.capture_devices`` with the flow's per-device
  machinery (breaker, gateway locks, retries, decoding each batch), no store;
- ``engine+buffer`` (``--paths`` to add it): the same with every sample committed to a
  SQLite buffer as the flow's store and forward does (no forwarder running).

Both connect every device before the first slot (the engine in its start lead). A slot
counts when its read answered before the next slot; a path *holds* a device count when
at least ``--held`` (99 %) of its slots count. Counts are stepped up per path from
``--start`` by ``--step`` until a count is not held twice in a row; the step is then
halved once between the last held count and the failed one. Printed per measurement:
slots held, the worker's CPU use over the slots (CPU seconds per wall second; 1.0 is its
whole core), the simulator's (same), and CPU per device-sample; at the end the largest
count each path held and the ratio engine / bare (goal: at least 0.9).

Run: ``.venv/bin/python benchmarks/bench_capture_scale.py [--start 1000] [--step 1000]
[--max 9000] [--seconds 30] [--paths bare,engine] [--simulator light|pymodbus]``
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PATHS = ("bare", "engine", "engine+buffer")
TAGS = 20
TIMEOUT = 0.5  # seconds a read may take (both paths), one retry in the engine
WORKER_CPU, SIMULATOR_CPU = 0, 1


def _pin(cpu: int) -> None:
    """Run on one CPU (when the machine has it), so the figures are one core's."""
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _configs(ports: list[int], n: int) -> list:
    from shopfloor.modbus.client import DeviceConfig
    from shopfloor.modbus.simulator import wide_map

    tags = tuple(wide_map(TAGS))
    return [DeviceConfig(name=f"d{i:04d}", loc_id=f"L{i:04d}", tags=tags, port=ports[i],
                         timeout_seconds=TIMEOUT, retries=1, backoff_seconds=0.05)
            for i in range(n)]


def _free_ports(n: int) -> list[int]:
    """``n`` free ports on 127.0.0.1 below the ephemeral range, not necessarily in a run:
    on a machine shared with other test suites no run of thousands is free."""
    from shopfloor.modbus.simulator import _ephemeral_low, _port_is_free

    ports = [p for p in range(20000, _ephemeral_low()) if _port_is_free(p)][:n]
    if len(ports) < n:
        raise SystemExit(f"only {len(ports)} free ports for {n} devices")
    return ports


def serve(ports_file: str, kind: str) -> None:
    """The simulator process: a device per port of ``ports_file``, pinned to its CPU."""
    import signal

    from shopfloor.modbus.simulator import (
        LightModbusSimulator,
        ModbusSimulator,
        SimulatedDevice,
        wide_map,
    )

    _pin(SIMULATOR_CPU)
    tags = wide_map(TAGS)
    devices = [SimulatedDevice(p, list(tags), phase=0.7 * i)
               for i, p in enumerate(json.loads(Path(ports_file).read_text()))]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with (LightModbusSimulator if kind == "light" else ModbusSimulator)(devices):
        print("serving", flush=True)
        while True:
            time.sleep(1)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU of this process and of the simulator from the first slot to the end."""

    def __init__(self, sim_pid: int, anchor: float):
        self.sim_pid, self.anchor = sim_pid, anchor
        self.start: tuple[float, float, float] | None = None
        self._thread = threading.Thread(target=self._at_anchor, daemon=True)
        self._thread.start()

    def _now(self) -> tuple[float, float, float]:
        return time.time(), time.process_time(), _proc_cpu(self.sim_pid)

    def _at_anchor(self) -> None:
        time.sleep(max(0.0, self.anchor - time.time()))
        self.start = self._now()

    def result(self) -> dict[str, float]:
        self._thread.join()
        assert self.start is not None
        end = self._now()
        wall = end[0] - self.start[0]
        return {"wall": wall, "cpu": end[1] - self.start[1], "sim_cpu": end[2] - self.start[2]}


async def _bare(ports: list[int], n: int, seconds: int, anchor: float) -> int:
    from pymodbus.client import AsyncModbusTcpClient

    from shopfloor.modbus.client import device_plan

    plan = device_plan(_configs(ports, 1)[0])
    clients = [AsyncModbusTcpClient("127.0.0.1", port=ports[i], timeout=TIMEOUT, retries=0,
                                    reconnect_delay=0) for i in range(n)]
    await asyncio.gather(*[c.connect() for c in clients])  # before the first slot
    held = 0

    async def device(client: AsyncModbusTcpClient) -> None:
        nonlocal held
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

    await asyncio.gather(*[device(c) for c in clients])
    for c in clients:
        c.close()
    return held


def _engine(ports: list[int], n: int, seconds: int, anchor: float, buffered: bool) -> int:
    from shopfloor.buffer.store import SampleBuffer
    from shopfloor.modbus.buffered import BufferSink, config_json, group_of
    from shopfloor.modbus.capture import CaptureStats
    from shopfloor.modbus.engine import DeviceJob, capture_devices

    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        buffer = SampleBuffer(Path(tmp, "bench.sqlite3")) if buffered else None
        if buffer is not None:
            buffer.start_run("bench")
        for cfg in _configs(ports, n):
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


def child(path: str, ports: list[int], n: int, seconds: int, sim_pid: int, profile: str | None
          ) -> None:
    """One measurement, in this (pinned) process: prints a JSON line."""
    _pin(WORKER_CPU)
    # Imported before the clock starts: the engine path's imports (pandas, pandera,
    # SQLite) would otherwise count as CPU per sample against the bare loop's.
    import pymodbus.client  # noqa: F401

    import shopfloor.buffer.store  # noqa: F401
    import shopfloor.modbus.buffered  # noqa: F401
    import shopfloor.modbus.engine  # noqa: F401
    from shopfloor.modbus.capture import schedule_anchor
    from shopfloor.modbus.engine import ensure_open_files

    ensure_open_files(n + 256, f"{n} devices")
    # the start lead: time to connect every device before slot 0 (a few thousand a second)
    anchor = schedule_anchor(1.0, time.time() + 3.0 + n / 1000)
    meter = Meter(sim_pid, anchor)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: a shared machine
        profiler.enable()
    if path == "bare":
        held = asyncio.run(_bare(ports, n, seconds, anchor))
    else:
        held = _engine(ports, n, seconds, anchor, buffered=path == "engine+buffer")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    print(json.dumps({"path": path, "devices": n, "slots": n * seconds, "held": held,
                      **meter.result()}))


def _wait(sim: subprocess.Popen) -> None:
    assert sim.stdout is not None
    line = sim.stdout.readline()  # "serving" once every device listens
    if not line.startswith("serving"):
        raise SystemExit(f"simulator did not come up: {line}{sim.stdout.read()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--max", type=int, default=9000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--held", type=float, default=0.99)
    parser.add_argument("--paths", default="bare,engine")
    parser.add_argument("--simulator", choices=("light", "pymodbus"), default="light")
    parser.add_argument("--profile", help="cProfile each measurement to PREFIX-PATH-N.prof")
    parser.add_argument("--child", choices=PATHS)
    parser.add_argument("--ports-file")
    parser.add_argument("--serve", choices=("light", "pymodbus"))
    parser.add_argument("--n", type=int)
    parser.add_argument("--sim-pid", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.ports_file, args.serve)
        return
    if args.child:
        ports = json.loads(Path(args.ports_file).read_text())
        child(args.child, ports, args.n, args.seconds, args.sim_pid, args.profile)
        return
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as tmp:
        ports_file = Path(tmp, "ports.json")
        ports_file.write_text(json.dumps(_free_ports(args.max)))
        sim = subprocess.Popen(
            [sys.executable, __file__, "--serve", args.simulator, "--ports-file",
             str(ports_file)], env=env, cwd=root, stdout=subprocess.PIPE, text=True)
        try:
            _wait(sim)
            _measure(args, str(ports_file), sim.pid, env, root)
        finally:
            sim.terminate()
            sim.wait(60)


def _run(args: argparse.Namespace, path: str, n: int, port: str, sim_pid: int, env: dict,
         root: Path) -> dict:
    profile = f"{args.profile}-{path}-{n}.prof" if args.profile else None
    out = subprocess.run(
        [sys.executable, __file__, "--child", path, "--ports-file", port, "--n", str(n),
         "--seconds", str(args.seconds), "--sim-pid", str(sim_pid),
         *(["--profile", profile] if profile else [])],
        env=env, cwd=root, capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    share = r["held"] / r["slots"]
    print(f"| {n} | {path} | {r['held']}/{r['slots']} | {100 * share:.2f} | "
          f"{r['cpu'] / r['wall']:.2f} | {r['sim_cpu'] / r['wall']:.2f} | "
          f"{1e6 * r['cpu'] / r['slots']:.0f} us | {os.getloadavg()[0]:.1f} |", flush=True)
    r["ok"] = share >= args.held
    return r


def _largest(args: argparse.Namespace, path: str, port: str, sim_pid: int, env: dict,
             root: Path) -> int:
    """The largest count ``path`` holds, stepping up (a miss is tried once more)."""
    best, n, step, failed = 0, args.start, args.step, 0
    while n <= args.max:
        if _run(args, path, n, port, sim_pid, env, root)["ok"]:
            best, failed = n, 0
            n += step
            continue
        failed += 1
        if failed < 2:
            continue  # once more: another session may have taken the core for a while
        if step == args.step and step >= 200 and best:
            step //= 2
            n, failed = best + step, 0
            continue
        break
    return best


def _measure(args: argparse.Namespace, port: str, sim_pid: int, env: dict, root: Path) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"{TAGS} float32 tags a device, {args.seconds} slots of 1 s, {args.simulator} "
          f"simulator on CPU {SIMULATOR_CPU}, worker on CPU {WORKER_CPU}; held at "
          f"{100 * args.held:g} %")
    print("| devices | path | slots held | held % | worker CPU use | simulator CPU use "
          "| worker CPU per sample | load |")
    print("|---|---|---|---|---|---|---|---|")
    best = {p: _largest(args, p, port, sim_pid, env, root) for p in args.paths.split(",")}
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    bare = best.get("bare", 0)
    for path, n in best.items():
        ratio = f"{n / bare:.2f}x bare" if bare and path != "bare" else ""
        print(f"largest count held: {path} {n} {ratio}")


if __name__ == "__main__":
    main()
