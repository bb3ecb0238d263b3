"""Store and forward for real: the warehouse PostgreSQL stopped (``-m immediate``) and
started during a capture run, moto's S3 server stopped and started, a collector killed
with ``kill -9`` during an outage and its backlog drained by the next run. Every reading
must reach ``temperature_raw`` and the landing exactly once, and no run may fail."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from shopfloor.db.schema import get_tables
from shopfloor.modbus.simulator import default_map
from shopfloor.storage import StorageLocation
from tests.conftest import free_port
from tests.pgcluster import PrivateCluster, private_cluster

ROOT = Path(__file__).resolve().parents[3]
DEVICES = ["mb-ok-1", "mb-ok-2"]
LOCS = {"mb-ok-1": "LOC-ok-1", "mb-ok-2": "LOC-ok-2"}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Chaos(threading.Thread):
    """Runs a fault script beside the flow; its failure is raised by :meth:`result`."""

    def __init__(self, script: Callable[[], None]):
        super().__init__(daemon=True)
        self.script, self.error = script, None

    def run(self) -> None:
        try:
            self.script()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def result(self) -> None:
        self.join(timeout=120)
        if self.error is not None:
            raise self.error


def _buffered(home: Path) -> int:
    """Samples held in the collector's buffer now (read beside the writer)."""
    path = home / "buffer" / "default.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        try:
            return db.execute("SELECT count(*) FROM sample").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0


def _raw_times(engine: Engine, loc: str) -> list:
    t = get_tables().temperature_raw
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(
                select(t.c.capture_dt).where(t.c.loc_id == loc).order_by(t.c.capture_dt))]
    except Exception:  # noqa: BLE001 - the server is down: nothing readable yet
        return []


def _reported(engine: Engine) -> dict[str, int]:
    """The backlog per sink the collector last reported to the warehouse (what the
    dashboard shows)."""
    t = get_tables().collector_backlog
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(t.c.sink, t.c.backlog_samples)
                                     .where(t.c.collector == "default")).all())
    except Exception:  # noqa: BLE001 - the server is down: nothing readable yet
        return {}


def _heartbeats(bodies: list[bytes]) -> Counter:
    """``(device, heartbeat)`` -> how many landed lines carry it."""
    lines = [json.loads(ln) for b in bodies for ln in b.decode().splitlines() if ln.strip()]
    return Counter((ln["device"], ln["heartbeat"]) for ln in lines)


def _local_landed(folder: Path) -> Counter:
    return _heartbeats([p.read_bytes() for p in sorted(folder.rglob("*.json"))])


def _ms(dt) -> int:
    return round(dt.timestamp() * 1000)


def _assert_exactly_once(engine: Engine, landed: Counter, samples: int | dict[str, int]
                         ) -> None:
    """Every device's ``samples`` (one count for all, or per device) are in the
    warehouse, the landing and tag_samples, each once."""
    for device, loc in LOCS.items():
        times = _raw_times(engine, loc)
        samples_of = samples if isinstance(samples, int) else samples[device]
        assert len(times) == samples_of, f"{device}: {len(times)} rows of {samples_of}"
        mine = {hb: n for (d, hb), n in landed.items() if d == device}
        assert set(mine.values()) == {1}, f"{device}: a landed reading twice"
        assert sorted(mine) == [_ms(t) for t in times]  # the same readings in both
        # Every tag of every reading in tag_samples too (docs/tags.md), each once.
        assert _tag_counts(engine, device, times) == dict.fromkeys(TAG_NAMES, samples_of)


TAG_NAMES = [t.name for t in default_map()]


def _tag_counts(engine: Engine, device: str, times: list) -> dict[str, int]:
    """Points per tag of ``device`` at ``times`` (other tests' runs of the device in a
    shared database have other times)."""
    t = get_tables()
    s, tags = t.tag_samples, t.tags
    with engine.connect() as conn:
        return dict(conn.execute(
            select(tags.c.name, func.count()).select_from(s.join(tags, s.c.tag_id == tags.c.id))
            .where(tags.c.device == device, s.c.ts.in_(times)).group_by(tags.c.name)).all())


@pytest.fixture
def private_pg(prefect_harness) -> Iterator[tuple[PrivateCluster, str, Engine]]:
    """A private cluster with the tables, and a connector block ``sf-private-pg``."""
    from blocks.bootstrap import connector_from_url
    from shopfloor.db.engine import init_db, make_engine

    with private_cluster() as cluster:
        engine = make_engine(cluster.url)
        init_db(engine)
        connector_from_url(cluster.url).save("sf-private-pg", overwrite=True)
        yield cluster, "sf-private-pg", engine
        engine.dispose()


def test_a_warehouse_restart_mid_run_loses_and_duplicates_nothing(
        device_blocks, private_pg, raw_logs, buffer_home):
    from flows.modbus_capture import modbus_capture

    cluster, block, engine = private_pg
    samples = 16

    def outage() -> None:
        wait_for(lambda: len(_raw_times(engine, "LOC-ok-1")) >= 2, 60, "first rows")
        cluster.stop("immediate")
        before = _buffered(buffer_home)
        wait_for(lambda: _buffered(buffer_home) >= before + 6, 60, "samples buffered")
        cluster.start()

    chaos = Chaos(outage)
    chaos.start()
    state = modbus_capture(DEVICES, samples=samples, interval_seconds=0.5, target_db=block,
                           land_json=True, raw_logs="modbus-test-raw", return_state=True)
    chaos.result()
    assert state.is_completed(), state.message
    rows = state.result()
    assert all(r["samples_ok"] == samples and r["samples_buffered"] == samples for r in rows)
    assert all(r["rows_written"] == samples for r in rows)
    _assert_exactly_once(engine, _local_landed(raw_logs), samples)
    assert _buffered(buffer_home) == 0  # everything forwarded to both sinks
    for device in DEVICES:  # whole minute batches, as a direct capture lands them
        assert len(list(raw_logs.rglob(f"*/{device}/*/*.json"))) <= 2


def test_the_landing_down_never_stops_the_warehouse_and_drains_when_s3_is_back(
        device_blocks, private_pg, buffer_home, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from flows.modbus_capture import modbus_capture

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="sf-landing")
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    S3Bucket(bucket_name="sf-landing", bucket_folder="raw", credentials=creds).save(
        "sf-outage-s3", overwrite=True)
    _, target_db, pg_engine = private_pg  # the warehouse stays up in this test
    samples = 12
    landing = "landing:sf-outage-s3"
    servers = [server]
    failed: list[str] = []  # landing writes that failed against the stopped server
    seen: dict[str, dict[str, int]] = {}  # the reported backlog during and after S3's stop
    write, exists = StorageLocation.write_bytes, StorageLocation.exists

    def observed(self, key: str, data: bytes) -> None:
        try:
            write(self, key, data)
        except Exception as exc:
            failed.append(repr(exc))
            raise

    def looked(self, key: str) -> bool:  # the landing asks before it writes
        try:
            return exists(self, key)
        except Exception as exc:
            failed.append(repr(exc))
            raise

    monkeypatch.setattr(StorageLocation, "write_bytes", observed)
    monkeypatch.setattr(StorageLocation, "exists", looked)

    def outage() -> None:
        servers[0].stop()  # S3 is away from the run's first slot ...
        # ... while the warehouse receives every reading of the run:
        wait_for(lambda: all(len(_raw_times(pg_engine, loc)) == samples
                             for loc in LOCS.values()), 60, "all rows in the warehouse")
        wait_for(lambda: bool(failed), 60, "a landing write to fail")
        # The dashboard's table shows the landing's backlog while S3 is away ...
        wait_for(lambda: _reported(pg_engine).get(landing, 0) > 0, 20,
                 "a landing backlog reported to the warehouse")
        seen["down"] = _reported(pg_engine)
        servers[0] = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        servers[0].start()  # moto's state lives in this process: the bucket is back
        # ... and 0 once the next pass drained it (the run's final drain, here).
        wait_for(lambda: _reported(pg_engine).get(landing) == 0, 40,
                 "the drained landing reported as 0")
        seen["back"] = _reported(pg_engine)

    chaos = Chaos(outage)
    chaos.start()
    try:
        state = modbus_capture(DEVICES, samples=samples, interval_seconds=0.5,
                               target_db=target_db, land_json=True, raw_logs="sf-outage-s3",
                               return_state=True)
        chaos.result()
        assert state.is_completed(), state.message
        assert failed  # the outage was met, not missed
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sf-landing").get("Contents", [])]
        landed = _heartbeats([s3.get_object(Bucket="sf-landing", Key=k)["Body"].read()
                              for k in keys])
    finally:
        servers[0].stop()
    _assert_exactly_once(pg_engine, landed, samples)
    assert _buffered(buffer_home) == 0
    assert seen["down"][landing] > 0
    assert seen["back"] == _reported(pg_engine) == {landing: 0, f"warehouse:{target_db}": 0}


_KILLED_COLLECTOR = """
import sys
from pathlib import Path
from shopfloor.buffer.store import SampleBuffer
from shopfloor.db.engine import make_engine
from shopfloor.db.schema import configured_tables
from shopfloor.modbus.buffered import (LANDING, WAREHOUSE, BufferSink, ForwardLoop, Forwarder,
                                       config_from_json, config_json, group_of)
from shopfloor.modbus.capture import CaptureStats, capture_device, schedule_anchor
from shopfloor.modbus.sink import ReadingSink
from shopfloor.storage import StorageLocation

cfg = config_from_json(Path(sys.argv[1]).read_text())
buf, url, folder = SampleBuffer(Path(sys.argv[2])), sys.argv[3], sys.argv[4]
run, wh, land = "killed-run", sys.argv[5], sys.argv[6]
buf.put_device(cfg.name, config_json(cfg))
for sink in (wh, land):
    buf.register_sink(sink, cfg.name)
buf.start_run(run)
engine, tables = make_engine(url), configured_tables()
storage = StorageLocation("local", folder)
ForwardLoop(Forwarder(WAREHOUSE, wh, buf, lambda c: ReadingSink(
    c, CaptureStats(c.name), run, engine=engine, tables=tables))).start()
ForwardLoop(Forwarder(LANDING, land, buf, lambda c: ReadingSink(
    c, CaptureStats(c.name), run, storage=storage))).start()
stats = CaptureStats(cfg.name)
sink = BufferSink(cfg, stats, run, buf, group_of(0.2, 100000))
capture_device(cfg, 100000, 0.2, schedule_anchor(0.2), sink, stats=stats, on_sample=sink.take)
"""


def test_a_collector_killed_during_an_outage_is_drained_by_the_next_run_exactly_once(
        device_blocks, private_pg, raw_logs, buffer_home, tmp_path):
    from blocks.modbus import ModbusDevice
    from flows.modbus_capture import modbus_capture
    from shopfloor.modbus.buffered import config_json

    cluster, block, engine = private_pg
    device = "mb-ok-2"
    cfg_file = tmp_path / "device.json"
    cfg_file.write_text(config_json(ModbusDevice.load(device).to_config(device)))
    path = buffer_home / "buffer" / "default.sqlite3"
    path.parent.mkdir(parents=True)
    cluster.stop("immediate")  # the warehouse is away when the collector dies
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_COLLECTOR, str(cfg_file), str(path), cluster.url,
         str(raw_logs), f"warehouse:{block}", "landing:modbus-test-raw"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _buffered(buffer_home) >= 10 or proc.poll() is not None, 60,
                 "the collector to buffer 10 samples")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        left = {r[0] for r in db.execute("SELECT capture_ms FROM sample")}
    assert len(left) >= 10
    cluster.start()

    # 1 s slots: a loaded machine that misses 0.2 s slots could leave the run without a
    # reading at all (and Failed); the backlog is the point, not the grid
    state = modbus_capture([device], samples=3, interval_seconds=1.0, target_db=block,
                           land_json=True, raw_logs="modbus-test-raw", return_state=True)
    assert state.is_completed(), state.message
    (row,) = state.result()
    assert row["samples_ok"] >= 1
    times = [_ms(t) for t in _raw_times(engine, LOCS[device])]
    assert len(times) == len(set(times)) == len(left) + row["samples_ok"]
    assert left <= set(times)  # every sample the killed collector buffered
    landed = _local_landed(raw_logs)
    assert set(landed.values()) == {1}  # each reading landed once
    assert sorted(hb for _, hb in landed) == times
    assert _buffered(buffer_home) == 0


def test_a_run_that_could_not_forward_ends_completed_and_names_the_backlog(
        device_blocks, private_pg, raw_logs, buffer_home, monkeypatch):
    from prefect.artifacts import Artifact

    import tasks.forwarding
    from flows.modbus_capture import modbus_capture

    cluster, block, engine = private_pg
    monkeypatch.setattr(tasks.forwarding, "FINAL_DRAIN_SECONDS", 0.5)
    monkeypatch.setenv("SHOPFLOOR_BUFFER_ALERT_AGE_SECONDS", "0.001")
    cluster.stop("immediate")  # away for the whole run
    state = modbus_capture(DEVICES, samples=4, interval_seconds=0.2, target_db=block,
                           land_json=True, raw_logs="modbus-test-raw", return_state=True)
    assert state.is_completed() and state.name == "Completed", state.message
    # what each device buffered: 4 each on a quiet machine, a loaded one may miss a slot
    first = {r["device"]: r["samples_buffered"] for r in state.result()}
    n = sum(first.values())
    assert min(first.values()) >= 1 and n >= 6, first
    assert state.message == (
        f"buffered {n}, forwarded 0 to warehouse:sf-private-pg, forwarded {n} to "
        f"landing:modbus-test-raw, backlog {n} for warehouse:sf-private-pg")
    assert sum(_local_landed(raw_logs).values()) == n  # the other sink went on
    table = json.loads(Artifact.get("modbus-capture-buffer").data)
    by_sink = {r["sink"]: r for r in table}
    assert by_sink["warehouse:sf-private-pg"]["backlog"] == n
    assert by_sink["warehouse:sf-private-pg"]["errors"] >= 1
    assert by_sink["landing:modbus-test-raw"]["backlog"] == 0

    cluster.start()  # the next run forwards the backlog with its own samples
    state = modbus_capture(DEVICES, samples=2, interval_seconds=1.0, target_db=block,
                           land_json=True, raw_logs="modbus-test-raw", return_state=True)
    assert state.is_completed() and "backlog" not in (state.message or ""), state.message
    second = {r["device"]: r["samples_buffered"] for r in state.result()}
    _assert_exactly_once(engine, _local_landed(raw_logs),
                         {d: first[d] + second[d] for d in first})
    # The first run's reports were skipped (the warehouse was away); the second's landed.
    assert _reported(engine) == {"warehouse:sf-private-pg": 0, "landing:modbus-test-raw": 0}


def test_a_full_buffer_drops_the_oldest_counts_them_and_says_so(
        device_blocks, private_pg, buffer_home, monkeypatch):
    import tasks.forwarding
    from flows.modbus_capture import modbus_capture

    cluster, block, _ = private_pg
    events: list[tuple[str, dict]] = []
    emit = tasks.forwarding.emit

    def recorded(event: str, resource: str, payload: dict | None = None, **labels: str) -> None:
        events.append((event, payload or {}))
        emit(event, resource, payload, **labels)

    monkeypatch.setattr(tasks.forwarding, "emit", recorded)
    monkeypatch.setattr(tasks.forwarding, "FINAL_DRAIN_SECONDS", 0.2)
    monkeypatch.setenv("SHOPFLOOR_BUFFER_MAX_BYTES", str(64 * 1024))
    cluster.stop("immediate")  # nothing leaves the buffer
    samples = 1200
    state = modbus_capture(["mb-ok-1"], samples=samples, interval_seconds=0.005,
                           target_db=block, return_state=True)
    assert state.is_completed() and state.name == "Completed", state.message
    (row,) = state.result()
    # a loaded machine misses some 5 ms slots; what matters is what was taken
    # (a sample the device did not answer is buffered too: its no-answer points)
    assert row["samples_buffered"] == row["samples_ok"] + row["samples_failed"]
    assert row["samples_ok"] > 0.5 * samples
    with sqlite3.connect(buffer_home / "buffer" / "default.sqlite3") as db:
        held = db.execute("SELECT count(*) FROM sample").fetchone()[0]
        (dropped,) = db.execute("SELECT dropped FROM device WHERE name = 'mb-ok-1'").fetchone()
    assert dropped > 0 and held + dropped == row["samples_buffered"]  # kept or counted
    assert f"backlog {held} for warehouse:sf-private-pg" in state.message
    assert f"dropped {dropped} by the buffer's limits" in state.message
    filling = [p for e, p in events if e == "shopfloor.buffer.filling"]
    assert filling and filling[-1]["dropped_total"] == dropped
    assert filling[-1]["fill_ratio"] > 0.8


def test_hours_that_receive_forwarded_rows_are_aggregated_again(
        device_blocks, simulator, private_pg, buffer_home):
    from datetime import UTC, datetime, timedelta

    from blocks.modbus import ModbusDevice
    from flows.hourly_aggregation import hourly_aggregation
    from flows.modbus_capture import modbus_capture
    from shopfloor.buffer.store import SampleBuffer
    from shopfloor.modbus.buffered import BufferSink, config_json, group_of
    from shopfloor.modbus.capture import CaptureStats, capture_device

    cluster, block, engine = private_pg
    device, loc = "mb-ok-1", LOCS["mb-ok-1"]
    cfg = ModbusDevice.load(device).to_config(device)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)

    def take(first: datetime, n: int, sink: Callable) -> None:
        # Real polls of the simulator, stamped with slots of a past hour (the clock is
        # held still so the loop does not wait for them).
        capture_device(cfg, n, 1.0, first.timestamp(), sink, clock=lambda: 0.0,
                       sleep=lambda s: None, on_sample=getattr(sink, "take", None))

    # The hour as first written and aggregated: 4 readings
    from shopfloor.db.schema import configured_tables
    from shopfloor.modbus.sink import ReadingSink
    take(hour + timedelta(minutes=10), 4, ReadingSink(cfg, CaptureStats(device), "direct",
                                                      engine=engine,
                                                      tables=configured_tables()))
    hourly_aggregation(source_db=block, target_db=block, timezone="UTC")
    h = get_tables().temperature_hourly
    key = (h.c.loc_id == loc) & (h.c.ymd == hour.strftime("%Y%m%d")) & (
        h.c.hh == hour.strftime("%H"))
    with engine.connect() as conn:
        assert conn.scalar(select(h.c.sample_count).where(key)) == 4

    # 5 more readings of that hour were buffered during an outage and are forwarded now
    path = buffer_home / "buffer" / "default.sqlite3"
    buf = SampleBuffer(path)
    buf.put_device(device, config_json(cfg))
    buf.register_sink(f"warehouse:{block}", device)
    take(hour + timedelta(minutes=20), 5, BufferSink(cfg, CaptureStats(device), "old-run",
                                                     buf, group_of(1.0, 5)))
    buf.close()
    modbus_capture([device], samples=1, target_db=block)  # drains the backlog
    hourly_aggregation(source_db=block, target_db=block, timezone="UTC")
    with engine.connect() as conn:
        assert conn.scalar(select(h.c.sample_count).where(key)) == 9  # re-aggregated


def test_an_overlapping_run_neither_waits_for_nor_cuts_the_other_runs_batches(
        device_blocks, private_pg, raw_logs, buffer_home):
    from flows.modbus_capture import modbus_capture

    _, block, engine = private_pg
    states = {}
    params = {"target_db": block, "land_json": True, "raw_logs": "modbus-test-raw",
              "return_state": True}
    # The longer run captures one device in a thread, the short one another meanwhile.
    long_run = threading.Thread(target=lambda: states.update(long=modbus_capture(
        ["mb-ok-1"], samples=20, interval_seconds=0.5, **params)))
    long_run.start()
    wait_for(lambda: _buffered(buffer_home) >= 2, 60, "the long run's first samples")
    short = modbus_capture(["mb-ok-2"], samples=2, interval_seconds=0.5, **params)
    assert long_run.is_alive()  # the short run ended while the long one captured ...
    assert short.is_completed() and "backlog" not in (short.message or ""), short.message
    long_run.join(timeout=120)
    assert states["long"].is_completed(), states["long"].message
    landed = _local_landed(raw_logs)
    assert set(landed.values()) == {1}
    # counted against the slots each run took (a loaded machine may miss one)
    taken = {"mb-ok-1": states["long"].result()[0]["samples_ok"],
             "mb-ok-2": short.result()[0]["samples_ok"]}
    assert taken["mb-ok-1"] >= 10 and taken["mb-ok-2"] >= 1
    for device, n in taken.items():
        assert len(_raw_times(engine, LOCS[device])) == n
        assert sum(1 for d, _ in landed if d == device) == n
    # ... and it did not cut the long run's open batch into pieces
    assert len(list(raw_logs.rglob("*/mb-ok-1/*/*.json"))) <= 2
