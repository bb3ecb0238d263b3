"""Fixtures of the MQTT tests: the real Mosquitto on 127.0.0.1:1883, a throwaway
PostgreSQL database per module, a publisher, a collector in a thread, and a wait on a
condition (never a sleep)."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from sqlalchemy import Engine, select

from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.mqtt.config import MqttConfig, parse_config
from shopfloor.mqtt.ingest import Collector, IngestStats
from tests.conftest import _reachable
from tests.pg import throwaway_database

BROKER = ("127.0.0.1", 1883)
WAIT_SECONDS = 60.0


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    if not _reachable(*BROKER):
        pytest.fail("Mosquitto is not running on 127.0.0.1:1883 (.ci/run starts it)")
    return BROKER


@pytest.fixture(scope="module")
def mqtt_db(pg_server_url: str) -> Iterator[Engine]:
    """A fresh PostgreSQL database for the module's tests."""
    with throwaway_database(pg_server_url, "shopfloor_mqtt") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def unique(prefix: str) -> str:
    """A name no other test (or parallel run) uses: topics and client ids."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {got!r})")
        time.sleep(0.05)


class Publisher:
    """A paho client that publishes with QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, client_id: str | None = None, will: tuple[str, bytes] | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or unique("pub"), protocol=mqtt.MQTTv5)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.received: list[mqtt.MQTTMessage] = []
        self.client.on_message = lambda _c, _u, m: self.received.append(m)
        self.client.connect(*BROKER)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), f"subscription to {topic} not acknowledged"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT: the broker publishes the will."""
        self.client.loop_stop()
        self.client.socket().close()


def config(client_id: str, **sections: Any) -> MqttConfig:
    return parse_config({"broker": {"client_id": client_id}, **sections})


@contextmanager
def running(cfg: MqttConfig, engine: Engine, seconds: float = 300.0
            ) -> Iterator[tuple[Collector, list[IngestStats]]]:
    """A collector in a thread until the block ends; its stats land in the list."""
    collector = Collector(cfg, engine, get_tables())
    stop = threading.Event()
    out: list[IngestStats] = []
    thread = threading.Thread(target=lambda: out.append(collector.run(seconds, stop)),
                              daemon=True)
    thread.start()
    try:
        wait_for(collector.connected.is_set, "the collector to connect", 20)
        yield collector, out
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "collector did not stop"


def samples(engine: Engine, device_prefix: str) -> list[dict[str, Any]]:
    """Every sample of the tags whose device starts with ``device_prefix``."""
    t = get_tables()
    s, tags = t.tag_samples, t.tags
    query = (select(tags.c.device, tags.c.name, tags.c.source_name, s.c.ts, s.c.value,
                    s.c.text_value, s.c.quality, s.c.reason)
             .join(tags, tags.c.id == s.c.tag_id)
             .where(tags.c.device.startswith(device_prefix))
             .order_by(tags.c.device, tags.c.name, s.c.ts))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


class CollectorProcess:
    """:mod:`tests.integration.mqtt.collector_proc` in its own process group."""

    def __init__(self, url: str, config_path: str, seconds: float = 300.0,
                 acknowledge: bool = True):
        root = Path(__file__).resolve().parents[3]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.mqtt.collector_proc", url, config_path,
             str(seconds), *([] if acknowledge else ["no-ack"])], cwd=root, env=env,
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()  # blocks until connected (or the process died)
        assert line.strip() == "connected", f"collector did not start: {line!r}"

    def kill(self) -> None:
        """SIGKILL: no DISCONNECT, no acknowledgement of what it had not stored."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def write_config(path: Path, cfg: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def db_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)
