"""MQTT ingestion benchmark (not a test): messages stored per second by the collector
(``shopfloor.mqtt.ingest.Collector``) against a bare paho subscriber that writes the
same rows with ``COPY``.

Each round first leaves ``--messages`` JSON messages of ``--tags`` numeric values each
(and a timestamp) queued at Mosquitto for a persistent session (the consumer is away,
as between two runs), then starts the consumer and times it from the first message it
receives to the last point committed to ``tag_samples`` (connecting, and the
collector's start-up reads of its tables, are not in it; nor is the publisher, which
ran before), so the figure is the consumer's own rate. Mosquitto queues at most
``max_queued_messages`` (1,000 by default) per session, hence the default of 900
messages of 100 values (90,000 points).

- **collector**: the product path: QoS 1 with acknowledgements sent only after the
  commit, tags registered, each value judged (type, range), batches of up to 250
  messages upserted by ``write_tag_points`` (binary ``COPY`` for 500 points and more),
  the next batch decoded (and its ``COPY`` data built) while the last one is written.
- **bare**: a paho client on the same kind of session, acknowledging on receipt (paho's
  default), ``json.loads``, the values picked by the same paths, one CSV per batch of
  what arrived, ``COPY`` into ``tag_samples`` (tag ids known in advance).

Both write into their own empty ``tag_samples`` (truncated before each round), rounds
interleaved. Besides the wall time, the CPU time of this process (the consumer's paho
thread, decoding and CSV; not the publisher, which runs before the timing, nor
PostgreSQL) per message. Run: ``.venv/bin/python benchmarks/bench_mqtt.py
[--messages 900] [--tags 100] [--rounds 5] [--own-broker]``; needs Mosquitto on
127.0.0.1:1883 (or, with ``--own-broker``, the ``mosquitto`` program: a broker of its
own on a free port without the 1,000-message queue limit, for longer rounds) and
PostgreSQL on 127.0.0.1:5432 (``SHOPFLOOR_BENCH_PG_URL``).
"""

import argparse
import io
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine, text

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import get_tables
from shopfloor.mqtt.config import parse_config
from shopfloor.mqtt.ingest import Collector

# The test helpers live in the repository's tests/: importable when run as written
# (`.venv/bin/python benchmarks/...`), without PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_port  # noqa: E402
from tests.pg import throwaway_database  # noqa: E402

HOST, PORT = "127.0.0.1", 1883
T0 = 1_790_000_000_000


@contextmanager
def own_broker() -> Iterator[int]:
    """A Mosquitto of the benchmark's own on a free port, without the queue limit (the
    default keeps at most 1,000 messages a session), so a round can leave more."""
    global PORT
    folder = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    folder.chmod(0o755)  # mosquitto started as root reads it as its own user
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} {HOST}\nallow_anonymous true\n"
                    "max_queued_messages 0\nmax_queued_bytes 0\n", encoding="utf-8")
    conf.chmod(0o644)
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection((HOST, port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        PORT = port
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 1000
    return props


def open_session(client_id: str, topic: str) -> None:
    """A persistent session subscribed to ``topic`` with nobody connected."""
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    c.on_subscribe = lambda *_a: done.set()
    c.connect(HOST, PORT, clean_start=True, properties=_props())
    c.loop_start()
    c.subscribe([(topic, SubscribeOptions(qos=1))])
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()


def publish(topic: str, messages: int, tags: int, round_no: int) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(200)
    c.connect(HOST, PORT)
    c.loop_start()
    infos = []
    for i in range(messages):
        body = {"ts": T0 + round_no * 10**7 + i,
                "v": {f"t{k}": i * 0.5 + k for k in range(tags)}}
        infos.append(c.publish(topic, json.dumps(body), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


def run_collector(engine: Engine, client_id: str, topic: str, tags: int,
                  expected: int) -> float:
    cfg = parse_config({"broker": {"client_id": client_id, "port": PORT}, "json": [{
        "topic": topic, "timestamp": "ts",
        "tags": [{"name": f"t{k}", "path": f"v.t{k}", "min_value": -1e9, "max_value": 1e9}
                 for k in range(tags)]}]})
    collector = Collector(cfg, engine, get_tables())
    stop = threading.Event()
    first: list[float] = []
    done: list[float] = []
    receive = collector._on_message

    def on_message(*args: object) -> None:
        if not first:
            first.append(time.perf_counter())
        receive(*args)

    collector.client.on_message = on_message

    def watch() -> None:
        while collector.stats.written < expected:
            time.sleep(0.002)
        done.append(time.perf_counter())
        stop.set()

    thread = threading.Thread(target=lambda: collector.run(600, stop))
    thread.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    thread.join()
    assert collector.stats.written == expected, collector.stats
    return done[0] - first[0]


def run_bare(engine: Engine, client_id: str, topic: str, tags: int, expected: int) -> float:
    """The baseline: receive, parse, pick, COPY; acknowledged by paho on receipt."""
    inbox: queue.Queue[bytes] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    first: list[float] = []

    def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        if not first:
            first.append(time.perf_counter())
        inbox.put(m.payload)

    c.on_message = on_message
    paths = [f"t{k}" for k in range(tags)]
    ids = list(range(1, tags + 1))
    c.connect(HOST, PORT, clean_start=False, properties=_props())
    c.loop_start()
    written = 0
    raw = engine.raw_connection()
    try:
        while written < expected:
            batch = [inbox.get()]
            while True:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            lines = []
            for payload in batch:
                doc = json.loads(payload)
                ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(doc["ts"] // 1000)) + \
                    f".{doc['ts'] % 1000:03d}"
                values = doc["v"]
                lines += [f"{i},{ts},{values[p]!r},,192,,{now}" for i, p in zip(ids, paths,
                                                                               strict=True)]
            cur = raw.cursor()
            cur.copy_expert("COPY tag_samples (tag_id, ts, value, text_value, quality, reason,"
                            " ingested_at) FROM STDIN WITH (FORMAT csv)",
                            io.StringIO("\n".join(lines) + "\n"))
            raw.commit()
            written += len(lines)
    finally:
        raw.close()
        c.disconnect()
        c.loop_stop()
    return time.perf_counter() - first[0]


def truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE tag_samples"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=900)
    ap.add_argument("--tags", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--own-broker", action="store_true",
                    help="a Mosquitto of its own without the 1,000-message queue limit "
                         "(for --messages above 1000)")
    args = ap.parse_args()
    with own_broker() if args.own_broker else nullcontext():
        bench(args)


def bench(args: argparse.Namespace) -> None:
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    expected = args.messages * args.tags
    with throwaway_database(server, "bench_mqtt") as url_a, \
            throwaway_database(server, "bench_mqtt") as url_b:
        ours, bare = make_engine(url_a), make_engine(url_b)
        init_db(ours)
        init_db(bare)
        run_id = uuid.uuid4().hex[:8]
        paths: dict[str, Callable[..., float]] = {"collector": run_collector,
                                                  "bare": run_bare}
        engines = {"collector": ours, "bare": bare}
        times: dict[str, list[float]] = {k: [] for k in paths}
        cpus: dict[str, list[float]] = {k: [] for k in paths}
        for r in range(args.rounds + 1):  # round 0 warms up (tags registered, caches)
            order = list(paths) if r % 2 == 0 else list(reversed(paths))
            for name in order:
                topic, client_id = f"bench-{run_id}/{name}/{r}", f"bench-{run_id}-{name}-{r}"
                truncate(engines[name])
                open_session(client_id, topic)
                publish(topic, args.messages, args.tags, r)
                cpu0 = time.process_time()
                took = paths[name](engines[name], client_id, topic, args.tags, expected)
                cpu = time.process_time() - cpu0
                if r:
                    times[name].append(took)
                    cpus[name].append(cpu)
                print(f"round {r} {name}: {args.messages / took:,.0f} messages/s "
                      f"({expected / took:,.0f} points/s), this process' CPU "
                      f"{cpu / args.messages * 1e6:,.0f} us a message", flush=True)
        for name, ts in times.items():
            print(f"{name}: best {args.messages / min(ts):,.0f} messages/s, median "
                  f"{args.messages / statistics.median(ts):,.0f}")
        best = min(times["bare"]) / min(times["collector"])
        median = statistics.median(times["bare"]) / statistics.median(times["collector"])
        print(f"collector / bare: {best:.2f}x (best), {median:.2f}x (median)")
        for name, cs in cpus.items():
            print(f"{name}: CPU of this process (paho, decoding, CSV; not PostgreSQL's) "
                  f"median {statistics.median(cs) / args.messages * 1e6:,.0f} us a message")
        ours.dispose()
        bare.dispose()


if __name__ == "__main__":
    main()
