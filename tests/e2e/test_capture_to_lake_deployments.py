"""The capture-to-lake deployments as users run them: a real `prefect server`, prefect.yaml's
`modbus-capture` (devices from a line file), `mqtt-ingest` and `tag-lake-export`
deployments on a process worker, their schedules compressed to every minute by an
override (as `shopfloor deploy --override` does), for SHOPFLOOR_DEPLOYRUNS_SECONDS (240 s;
`make deployruns`). Real inputs: `shopfloor simulate modbus`, a JSON and a Sparkplug B
publisher on Mosquitto (127.0.0.1:1883), PostgreSQL for the warehouse, the local lake.

Checked row by row: every capture slot of every run in `temperature_raw` and as 4 tag
samples; the device added to the line file mid-way polled from the next run on, not
before; every MQTT value published in `tag_samples` once, with its value; the lake
(through the lake protocol) holding the warehouse's tag samples once each; every run's
state and artifact in the API.
"""

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import create_engine, text

from deployments.deploy import load_config, plan_deploy
from shopfloor.lake import protocol
from shopfloor.modbus.simulator import free_port_run
from shopfloor.storage import StorageLocation
from tests.conftest import free_port
from tests.e2e.servers import BIN, ROOT, api, clean_env, marked_pids, prefect_server, sh, stop
from tests.integration.mqtt.edge import EdgeNode
from tests.integration.mqtt.test_mqtt_flow import open_session
from tests.pg import throwaway_database

SECONDS = float(os.environ.get("SHOPFLOOR_DEPLOYRUNS_SECONDS", "240"))
POOL = "shopfloor-process"
DEVICES = 3  # simulated PLCs; the line file starts with two, the third is added mid-way
pytestmark = [pytest.mark.deployruns, pytest.mark.timeout(int(SECONDS) + 900)]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def _line(port: int, count: int) -> str:
    """A line file of ``count`` simulated PLCs, the last two behind one gateway."""
    simulator_map = ROOT / "maps" / "simulator.yaml"
    devices = [{"name": f"e2e-plc-{i}", "host": "127.0.0.1", "port": port + i - 1,
                "loc_id": f"E2EL{i}", "map": str(simulator_map)} for i in range(1, count + 1)]
    doc = {"defaults": {"district": "D01", "timeout_seconds": 1.0}, "devices": devices}
    if count == DEVICES:
        doc["gateways"] = {f"127.0.0.1:{port + DEVICES - 1}": {"concurrency": 1}}
    return yaml.safe_dump(doc, sort_keys=False)


def _mqtt_config(client_id: str, root: str, group: str) -> dict:
    """config/mqtt-example.yaml with its own client id, topic root and Sparkplug group
    (the broker is shared with other tests)."""
    cfg = yaml.safe_load((ROOT / "config" / "mqtt-example.yaml").read_text())
    cfg["broker"]["client_id"] = client_id
    cfg["broker"]["session_expiry_seconds"] = 900  # not a week on a shared broker
    cfg["json"][0]["topic"] = f"{root}/+/press/+"
    cfg["sparkplug"][0]["group"] = group
    return cfg


def _every_minute_at(second: int) -> list[dict]:
    return [{"interval": 60, "anchor_date": f"2026-01-01T00:00:{second:02d}Z",
             "timezone": "UTC"}]


class Publisher(threading.Thread):
    """JSON press messages every second (with a timestamp: exactly once) and a Sparkplug
    B edge node's data every 2 s; keeps every value it published by (device, tag, ms)."""

    def __init__(self, root: str, group: str) -> None:
        super().__init__(daemon=True)
        self.root, self.group = root, group
        self.sent: dict[tuple[str, str, int], tuple[float | None, str | None]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"e2e-pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        edge = EdgeNode(self.group, "node1")
        edge.births(0, int(time.time() * 1000))
        i = 0
        while not self.halt.is_set():
            i += 1
            ms = int(time.time() * 1000)
            pressure = round(1 + (i % 80) * 0.1, 3)  # 1.0 .. 8.9: always in range
            body = {"ts": ms, "data": {"pressure": pressure, "running": i % 2 == 0},
                    "recipe": f"r{i % 3}"}
            client.publish(f"{self.root}/line1/press/7", json.dumps(body),
                           qos=1).wait_for_publish(10)
            self.sent[("press-7", "line_pressure", ms)] = (pressure, None)
            self.sent[("press-7", "running", ms)] = (float(i % 2 == 0), None)
            self.sent[("press-7", "recipe", ms)] = (None, f"r{i % 3}")
            if i % 2 == 0:
                edge.node_data(i, ms)
                edge.device_data(i, ms)
            self.halt.wait(1.0)
        for (key, name, ts), value in edge.published.items():
            self.sent[(key, name, ts)] = (None, value) if isinstance(value, str) \
                else (float(value), None)
        edge.close()
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def system(tmp_path: Path, pg_server_url: str) -> Iterator[dict]:
    """Server, warehouse, simulator; everything started is stopped at the end."""
    marker = f"sf-deployruns-{uuid.uuid4().hex}"
    procs: list[subprocess.Popen] = []
    with throwaway_database(pg_server_url, "deployruns") as db_url:
        env = clean_env()
        env.update({"SHOPFLOOR_DEPLOYRUNS_MARKER": marker, "PREFECT_LOGGING_LEVEL": "INFO",
                    "SHOPFLOOR_HOME": str(tmp_path / "shopfloor"), "SHOPFLOOR_DB_URL": db_url,
                    "PREFECT_WORKER_QUERY_SECONDS": "2"})
        try:
            with prefect_server(tmp_path, env, free_port()):
                yield {"env": env, "home": tmp_path, "db": db_url, "procs": procs}
                for p in procs:
                    stop(p, signal.SIGINT, timeout=90)
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
            for pid in marked_pids(marker):
                os.kill(pid, signal.SIGKILL)


def _spawn(system: dict, name: str, *args: str) -> subprocess.Popen:
    with open(system["home"] / f"{name}.log", "a") as log:
        proc = subprocess.Popen(list(args), env=system["env"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    system["procs"].append(proc)
    return proc


def _deploy(system: dict, line_file: Path, mqtt_config: Path) -> None:
    """The three deployments of prefect.yaml as `shopfloor deploy --local --override`
    derives them: line file instead of devices, every minute."""
    override = {"deployments": {
        "modbus_capture/every-hour": {
            "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
            "parameters": {"devices": None, "line_file": str(line_file), "span_seconds": 60},
            "concurrency_limit": {"limit": 3, "collision_strategy": "ENQUEUE"}},
        "mqtt_ingest/every-hour": {
            "schedules": _every_minute_at(5),
            "parameters": {"config": str(mqtt_config), "duration_seconds": 30}},
        "tag_lake_export/hourly": {"schedules": _every_minute_at(50),
                                   "parameters": {"lag_minutes": 1}},
    }}
    plan = plan_deploy(load_config(ROOT), "local", None, ROOT, override=override)
    keep = {"modbus_capture/every-hour", "mqtt_ingest/every-hour", "tag_lake_export/hourly"}
    plan.config["deployments"] = [
        d for d in plan.config["deployments"]
        if f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}" in keep]
    derived = system["home"] / "prefect.yaml"
    derived.write_text(yaml.safe_dump(plan.config, sort_keys=False))
    env, shopfloor = system["env"], str(BIN / "shopfloor")
    sh(env, shopfloor, "blocks", "bootstrap")
    sh(env, shopfloor, "db", "init")
    sh(env, str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process")
    sh(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
       str(derived))


def _runs(env: dict) -> list[dict]:
    flows = {f["id"]: f["name"] for f in api(env, "POST", "/flows/filter", json={}).json()}
    runs = api(env, "POST", "/flow_runs/filter",
               json={"sort": "EXPECTED_START_TIME_ASC", "limit": 200}).json()
    return [dict(r, flow=flows[r["flow_id"]]) for r in runs]


def _artifacts(env: dict, run_id: str) -> dict[str, dict]:
    found = api(env, "POST", "/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()
    return {a["key"]: a for a in found if a.get("key")}


def _logs(env: dict, run_id: str) -> str:
    found = api(env, "POST", "/logs/filter",
                json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}).json()
    return "\n".join(x["message"] for x in found)


def _cancel_scheduled(env: dict) -> None:
    for dep in api(env, "POST", "/deployments/filter", json={}).json():
        api(env, "POST", f"/deployments/{dep['id']}/pause_deployment")
    for run in api(env, "POST", "/flow_runs/filter", json={"flow_runs": {
            "state": {"type": {"any_": ["SCHEDULED"]}}}}).json():
        api(env, "POST", f"/flow_runs/{run['id']}/set_state", json={
            "state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True})


def _quiet(env: dict) -> bool:
    return not api(env, "POST", "/flow_runs/filter", json={"flow_runs": {"state": {"type": {
        "any_": ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"]}}}}).json()


def test_capture_mqtt_and_lake_export_on_their_schedules(system: dict) -> None:
    env, home = system["env"], system["home"]
    port = free_port_run(DEVICES)
    sim = _spawn(system, "simulator", str(BIN / "shopfloor"), "simulate", "modbus", "--port",
                 str(port), "--devices", str(DEVICES))
    line_file = home / "line1.yaml"
    line_file.write_text(_line(port, DEVICES - 1))
    tag = uuid.uuid4().hex[:8]
    client_id, root, group = f"e2e-collector-{tag}", f"e2e{tag}", f"e2eplant{tag}"
    mqtt_config = home / "mqtt.yaml"
    mqtt_config.write_text(yaml.safe_dump(_mqtt_config(client_id, root, group)))
    # The collector's session exists before the first run (as after any earlier run), so
    # the broker keeps everything published from now on.
    open_session(client_id, f"{root}/+/press/+")
    open_session(client_id, f"spBv1.0/{group}/#")
    _deploy(system, line_file, mqtt_config)
    wait_for(lambda: "serving" in (home / "simulator.log").read_text() or sim.poll() is not None,
             60, "the simulator")
    publisher = Publisher(root, group)
    publisher.start()
    _spawn(system, "worker", str(BIN / "prefect"), "worker", "start", "--pool", POOL)
    t0 = time.time()
    # Half-way, the third device joins the line: the next capture run reads it.
    time.sleep(SECONDS / 2)
    line_file.write_text(_line(port, DEVICES))
    edited = time.time()
    time.sleep(max(0.0, t0 + SECONDS - time.time()))
    publisher.halt.set()
    publisher.join(30)
    _cancel_scheduled(env)
    wait_for(lambda: _quiet(env), 300, "the last runs to end")
    # What the last runs stored: one more ingestion and a final export, both by deployment.
    for args in (["mqtt-ingest/every-hour", "--param", "duration_seconds=15"],
                 ["tag-lake-export/hourly", "--param", "lag_minutes=0"]):
        res = sh(env, str(BIN / "prefect"), "deployment", "run", args[0], *args[1:],
                 "--watch", "--watch-timeout", "300", check=False, timeout=360)
        assert res.returncode == 0, res.stdout + res.stderr

    runs = _runs(env)
    by_flow = Counter(r["flow"] for r in runs if r["state_type"] != "CANCELLED")
    assert by_flow["modbus-capture"] >= 2 and by_flow["mqtt-ingest"] >= 2 \
        and by_flow["tag-lake-export"] >= 2, by_flow
    bad = [(r["flow"], r["name"], r["state_name"], r["state"]["message"]) for r in runs
           if r["state_type"] not in ("COMPLETED", "CANCELLED")]
    assert not bad, bad

    engine = create_engine(system["db"])
    with engine.connect() as conn:
        raw = Counter((loc, dt) for loc, dt in conn.execute(text(
            "SELECT loc_id, capture_dt FROM temperature_raw")))
        per_row = Counter((loc, ts) for loc, ts in conn.execute(text(
            "SELECT t.location, s.ts FROM tag_samples s JOIN tags t ON t.id = s.tag_id "
            "WHERE t.device LIKE 'e2e-plc-%'")))
        mqtt_rows = {(d, n, int(ts.replace(tzinfo=UTC).timestamp() * 1000)): (v, tv)
                     for d, n, ts, v, tv in conn.execute(text(
                         "SELECT t.device, t.name, s.ts, s.value, s.text_value "
                         "FROM tag_samples s JOIN tags t ON t.id = s.tag_id "
                         "WHERE t.device = 'press-7' OR t.device LIKE :g"), {"g": f"{group}/%"})}
        warehouse = {(t, ts.replace(tzinfo=UTC)): (v, tv, q) for t, ts, v, tv, q in conn.execute(
            text("SELECT tag_id, ts, value, text_value, quality FROM tag_samples"))}
    engine.dispose()

    # Capture: every slot of every run's window, once, each reading as 4 tag samples.
    for run in (r for r in runs if r["flow"] == "modbus-capture"
                and r["state_type"] == "COMPLETED"):
        window = datetime.fromisoformat(run["expected_start_time"]).timestamp() // 60 * 60 + 30
        slots = [datetime.fromtimestamp(window + 5 * k, UTC).replace(tzinfo=None)
                 for k in range(12)]
        loaded_after_edit = "added e2e-plc-3" in _logs(env, run["id"]) or \
            datetime.fromisoformat(run["start_time"]).timestamp() > edited + 5
        for i in range(1, DEVICES + 1):
            got = [raw[(f"E2EL{i}", s)] for s in slots]
            if i < DEVICES or loaded_after_edit:
                missed = "slots of the window already past" in _logs(env, run["id"])
                assert missed or got == [1] * 12, (run["name"], i, got)
                assert all(per_row[(f"E2EL{i}", s)] == 4 for s, n in zip(slots, got, strict=True)
                           if n), \
                    (run["name"], i)
            elif datetime.fromisoformat(run["start_time"]).timestamp() < edited:
                assert got == [0] * 12, (run["name"], i, got)
        assert "modbus-capture" in _artifacts(env, run["id"]), run["name"]
    assert any(r["flow"] == "modbus-capture" and "added e2e-plc-3" in _logs(env, r["id"])
               for r in runs), "no run picked the edited line file up"

    # MQTT: every value published, once, as published.
    missing = sorted(set(publisher.sent) - set(mqtt_rows))
    assert not missing, (len(missing), missing[:5])
    wrong = [k for k, (v, tv) in publisher.sent.items()
             if mqtt_rows[k][1] != tv or (v is not None and abs(mqtt_rows[k][0] - v) > 1e-6)]
    assert not wrong, wrong[:5]
    for run in (r for r in runs if r["flow"] == "mqtt-ingest"):
        assert "mqtt-ingest" in _artifacts(env, run["id"]), run["name"]

    # The lake: the warehouse's tag samples, each once, with its values.
    lake = StorageLocation("local", str(Path(env["SHOPFLOOR_HOME"]) / "lake"))
    rows = [r for f in protocol.visible_files(lake, "tag_samples") if f.key.endswith(".parquet")
            for r in pq.read_table(lake.url(f.key)).to_pylist()]
    keys = Counter((r["tag_id"], r["ts"]) for r in rows)
    assert not [k for k, n in keys.items() if n > 1]
    assert {(r["tag_id"], r["ts"]): (r["value"], r["text_value"], r["quality"])
            for r in rows} == warehouse
    for run in (r for r in runs if r["flow"] == "tag-lake-export"):
        assert "tag-lake-export" in _artifacts(env, run["id"]), run["name"]
