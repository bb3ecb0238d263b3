"""The ``mqtt-ingest`` flow: a window of ingestion that ends Completed with what it did,
a table artifact, and the next run storing what arrived between runs (docs/mqtt.md)."""

import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine

from tests.integration.mqtt.conftest import (
    BROKER,
    Publisher,
    samples,
    unique,
    wait_for,
    write_config,
)

T0 = 1_790_000_000_000
WINDOW_SECONDS = 8.0  # each run's window; the messages wait at the broker before it


@pytest.fixture
def warehouse_block(mqtt_db: Engine, prefect_harness: None) -> str:
    from blocks.bootstrap import connector_from_url

    connector_from_url(mqtt_db.url.render_as_string(hide_password=False)).save(
        "mqtt-test-db", overwrite=True)
    return "mqtt-test-db"


def open_session(client_id: str, topic: str) -> None:
    """Make the broker keep a persistent session for ``client_id`` subscribed to
    ``topic`` (what a previous run leaves behind)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    subscribed: list[bool] = []
    client.on_subscribe = lambda *_a: subscribed.append(True)
    client.connect(*BROKER, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe([(topic, SubscribeOptions(qos=1))])
    wait_for(lambda: subscribed, "the subscription")
    client.disconnect()
    client.loop_stop()


def test_runs_end_completed_saying_what_they_did_and_the_next_run_continues(
        broker: tuple, mqtt_db: Engine, warehouse_block: str, tmp_path: Path) -> None:
    from flows.mqtt_ingest import mqtt_ingest

    root, client_id = unique("flow"), unique("collector")
    path = write_config(tmp_path / "mqtt.yaml", {
        "broker": {"client_id": client_id},
        "json": [{"topic": f"{root}/+", "timestamp": "ts",
                  "tags": [{"name": "v", "path": "v", "max_value": 100}]}]})
    open_session(client_id, f"{root}/+")
    pub = Publisher()
    for i in range(30):  # while no run: the broker keeps them for the session
        pub.publish(f"{root}/a", json.dumps({"ts": T0 + i, "v": 200 if i == 7 else i}))
    state = mqtt_ingest(config=path, duration_seconds=WINDOW_SECONDS,
                        target_db=warehouse_block, return_state=True)
    assert state.is_completed()
    row = state.result()
    assert (row["received"], row["written"], row["bad"]) == (30, 30, 1)
    assert "received 30 messages, wrote 30 points (1 bad, 0 uncertain)" in state.message
    for i in range(30, 50):  # between runs
        pub.publish(f"{root}/a", json.dumps({"ts": T0 + i, "v": i}))
    pub.close()
    second = mqtt_ingest(config=path, duration_seconds=WINDOW_SECONDS,
                         target_db=warehouse_block)
    assert (second["received"], second["written"], second["bad"]) == (20, 20, 0)
    rows = samples(mqtt_db, root)
    assert [int(r["ts"].timestamp() * 1000) - T0 for r in rows] == list(range(50))
    assert [r["reason"] for r in rows if r["quality"] == 0] == ["out of range [-inf, 100]"]


def test_an_invalid_configuration_fails_the_run_before_connecting(
        warehouse_block: str, tmp_path: Path) -> None:
    from flows.mqtt_ingest import mqtt_ingest

    path = tmp_path / "bad.yaml"
    path.write_text("broker:\n  client_id: x\njson:\n  - topic: a/#/b\n    tags: []\n")
    state = mqtt_ingest(config=str(path), duration_seconds=1.0, target_db=warehouse_block,
                        return_state=True)
    assert state.is_failed()
    assert "line 4: json[0].topic" in state.message
