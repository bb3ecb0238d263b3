"""spark-sensor-extraction on a real Spark standalone cluster: a master and two workers
started from the pyspark wheel's own ``spark-class`` on 127.0.0.1, the flow's driver in a
child process with ``spark_master="spark://127.0.0.1:<port>"``, the lake on moto's S3.

The assertion that the executors, not the driver, wrote the files comes from Spark's
event log: every Parquet file carries the Spark partition id of the task that wrote it
(``part-<token>-<pid>-<seq>.parquet``), and the log says which executor ran that task and
on which worker that executor lived.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest
from prefect.settings import PREFECT_API_URL
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pyarrow import fs

from blocks.bootstrap import connector_from_url
from shopfloor.db.schema import get_tables
from shopfloor.historian.plan import epoch_ms
from shopfloor.historian.seed import GOOD, HistorianSeed, reading, seed_historian
from tests.conftest import free_port

pytestmark = [pytest.mark.long, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
# The integration tests' seed (same tags), in tables of its own.
SEED = HistorianSeed(start=datetime(2026, 1, 30, tzinfo=UTC),
                     end=datetime(2026, 2, 3, tzinfo=UTC), n_tags=20, interval_s=3600,
                     table_pattern="cluster_{yyyy}_{mm}")
WINDOW = (date(2026, 1, 30), date(2026, 1, 31))  # two days: two read ranges, two tasks
WORKERS = 2

CHILD = textwrap.dedent("""
    import json, sys
    from datetime import date
    from flows.spark_extraction import spark_sensor_extraction
    results = spark_sensor_extraction(
        start=date(2026, 1, 30), end=date(2026, 1, 31), historian_db={historian!r},
        lake={lake!r}, tag_patterns=["line1/%", "line2/%"], table_pattern={pattern!r},
        spark_master={master!r}, num_partitions=2, recheck_days=0, spark_conf={conf!r})
    print("RESULTS=" + json.dumps([vars(r) for r in results]))
""")


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (the JVM and its launcher), SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _master_state(ui: str) -> dict:
    try:
        return httpx.get(f"{ui}/json/", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


@contextmanager
def standalone_cluster(home: Path, env: dict[str, str]) -> Iterator[dict]:
    """A master and ``WORKERS`` workers (1 core, 1 GB each) on 127.0.0.1 until the block
    ends; yields ``{"master": spark://..., "ui": http://..., "worker_ports": [...]}``."""
    port, ui_port = free_port(), free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    procs = [_start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(ui_port)], env,
                    home / "master.log")]
    worker_ports = [free_port() for _ in range(WORKERS)]
    try:
        for i, wport in enumerate(worker_ports):
            (home / f"work{i}").mkdir()
            procs.append(_start(
                ["org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                 "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                 "--webui-port", str(wport), "--work-dir", str(home / f"work{i}")],
                env, home / f"worker{i}.log"))
        deadline = time.monotonic() + 90
        state: dict = {}
        while time.monotonic() < deadline:
            state = _master_state(ui)
            alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            if state.get("status") == "ALIVE" and len(alive) == WORKERS:
                break
            assert all(p.poll() is None for p in procs), _logs(home)
            time.sleep(1)
        else:
            raise AssertionError(f"cluster not up in 90 s: {state}\n{_logs(home)}")
        yield {"master": f"spark://127.0.0.1:{port}", "ui": ui, "worker_ports": worker_ports}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _logs(home: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in home.glob("*.log"))


def events(folder: Path) -> list[dict]:
    """The events of the one application logged in ``folder`` (Spark 4 writes a folder
    ``eventlog_v2_<app>`` of rolled files ``events_<n>_<app>``)."""
    [log] = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = (sorted(log.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
             if log.is_dir() else [log])
    return [json.loads(line) for f in files for line in f.read_text().splitlines()
            if line.strip()]


def writer_tasks(log: list[dict]) -> list[dict[int, str]]:
    """Per write stage (one per month, in order): Spark partition id -> executor id of the
    successful task of the stage that ran the executors' Parquet writer (``mapInArrow``)."""
    stages = {e["Stage Info"]["Stage ID"] for e in log
              if e["Event"] == "SparkListenerStageSubmitted"
              and any('"MapInArrow"' in rdd.get("Scope", "")
                      for rdd in e["Stage Info"]["RDD Info"])}
    by_stage: dict[int, dict[int, str]] = {s: {} for s in stages}
    for e in log:
        if (e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in stages
                and e["Task End Reason"]["Reason"] == "Success"):
            info = e["Task Info"]
            by_stage[e["Stage ID"]][info.get("Partition ID", info["Index"])] = info["Executor ID"]
    return [by_stage[s] for s in sorted(stages)]


def executor_workers(log: list[dict]) -> dict[str, int]:
    """Executor id -> the web UI port of the worker that ran it (from its log URLs)."""
    out = {}
    for e in log:
        if e["Event"] == "SparkListenerExecutorAdded":
            url = e["Executor Info"]["Log Urls"]["stdout"]
            out[e["Executor ID"]] = int(re.search(r"//[^:/]+:(\d+)/", url).group(1))
    return out


@pytest.fixture
def blocks(prefect_harness, pg_url, pg_engine, s3_endpoint, s3_bucket) -> tuple[str, str]:
    seed_historian(pg_engine, get_tables(None), SEED)
    historian = f"hist-cluster-{uuid.uuid4().hex[:8]}"
    connector_from_url(pg_url).save(historian)
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    lake = f"s3-cluster-{uuid.uuid4().hex[:8]}"
    S3Bucket(bucket_name=s3_bucket, bucket_folder="lake", credentials=creds).save(lake)
    return historian, lake


def expected_rows(lines: set[int]) -> set[tuple[int, int, float]]:
    lo, hi = epoch_ms(WINDOW[0]), epoch_ms(WINDOW[1]) + 86_400_000
    out = set()
    for tag_id in range(1, SEED.n_tags + 1):
        if tag_id % SEED.lines + 1 not in lines:
            continue
        for t_ms in range(max(lo, SEED.origin_ms), min(hi, SEED.end_ms), SEED.step_ms):
            r = reading(SEED, tag_id, t_ms)
            if r["dataintegrity"] == GOOD:
                value = r["floatvalue"] if r["floatvalue"] is not None else r["intvalue"]
                out.add((tag_id, t_ms, float(value)))
    return out


def test_the_executors_of_a_standalone_cluster_write_the_extraction_to_s3(
        tmp_path, blocks, s3_endpoint, s3_bucket):
    historian, lake = blocks
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    env.update({"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_DAEMON_MEMORY": "256m", "SPARK_LOG_DIR": str(tmp_path),
                "SPARK_WORKER_DIR": str(tmp_path)})
    eventlog = tmp_path / "events"
    eventlog.mkdir()
    conf = {
        "spark.executor.memory": "512m", "spark.executor.cores": "1",
        "spark.cores.max": str(WORKERS), "spark.driver.memory": "512m",
        # schedule only once both executors are up, so both get tasks
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": eventlog.as_uri(),
        "spark.eventLog.compress": "false",
        "spark.ui.enabled": "false",
    }
    with standalone_cluster(tmp_path, env) as cluster:
        # The executors run the Python the driver names in PYSPARK_PYTHON (else python3
        # on the workers' PATH, which has no pyarrow here); they never import this
        # project: the writer is pickled by value.
        child_env = {**env, "PREFECT_API_URL": PREFECT_API_URL.value(),
                     "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
        child = subprocess.run(
            [sys.executable, "-c", CHILD.format(historian=historian, lake=lake,
                                                pattern=SEED.table_pattern,
                                                master=cluster["master"], conf=conf)],
            cwd=REPO, env=child_env, capture_output=True, text=True, timeout=240)
        assert child.returncode == 0, child.stderr[-4000:] + _logs(tmp_path)
        apps = _master_state(cluster["ui"]).get("completedapps", [])
    [line] = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULTS=")]
    results = json.loads(line.removeprefix("RESULTS="))
    assert [(r["month"], r["status"], r["writer"]) for r in results] == [
        ("2026-01", "ok", "arrow-s3")]
    assert [a["state"] for a in apps] == ["FINISHED"]

    s3 = fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                         endpoint_override=s3_endpoint.removeprefix("http://"), scheme="http")
    base = f"{s3_bucket}/lake/sensor_data"
    rows = ds.dataset(base, format="parquet", partitioning="hive", filesystem=s3
                      ).to_table().to_pylist()
    want = expected_rows({1, 2})
    assert len(rows) == len(want) and {
        (r["tagid"], int(r["ts"].timestamp() * 1000), r["value"]) for r in rows} == want

    # Who wrote each file: its name holds the writing task's partition id; the event log
    # maps that task to an executor and the executor to its worker.
    log = events(eventlog)
    [tasks] = writer_tasks(log)  # the month's one write stage
    workers = executor_workers(log)
    assert len(workers) == WORKERS and set(workers.values()) == set(cluster["worker_ports"])
    keys = [i.path for i in s3.get_file_info(fs.FileSelector(base, recursive=True))
            if i.type == fs.FileType.File]
    writers = set()
    for key in keys:
        pid = int(re.search(r"part-[\w-]+?-(\d{5})-\d{4}\.parquet$", key).group(1))
        executor = tasks[pid]
        assert executor != "driver" and executor in workers
        writers.add(executor)
    # The default date layout: one folder per day, each day's rows written by one task
    assert {key.rsplit("/", 1)[0].rsplit("/", 1)[1] for key in keys} == {
        "date=2026-01-30", "date=2026-01-31"}
    assert len({r["tag"] for r in rows}) == 10  # lines 1 and 2, the tag a column
    assert writers == set(workers)  # executors on both workers wrote files
