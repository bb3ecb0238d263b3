"""Sparkplug B into tag samples against the real Mosquitto and PostgreSQL
(docs/mqtt.md): births name the metrics, data arrives by alias, a sequence gap asks the
node for a rebirth, a collector killed mid-stream loses and duplicates nothing (its
alias table is in the warehouse), device and node deaths mark their tags bad."""

from pathlib import Path

from sqlalchemy import Engine

from tests.integration.mqtt.conftest import (
    CollectorProcess,
    db_url,
    samples,
    unique,
    wait_for,
    write_config,
)
from tests.integration.mqtt.edge import DEVICE_METRICS, NODE_METRICS, EdgeNode

T0 = 1_790_000_000_000
GOOD, BAD = 192, 0


def _good(engine: Engine, group: str) -> dict[tuple[str, str, int], float | str]:
    return {(r["device"], r["name"], int(r["ts"].timestamp() * 1000)):
            (r["text_value"] if r["text_value"] is not None else r["value"])
            for r in samples(engine, group) if r["quality"] == GOOD}


def test_births_aliases_a_gap_a_restart_and_deaths(broker: tuple, mqtt_db: Engine,
                                                   tmp_path: Path) -> None:
    group = unique("plant")
    path = write_config(tmp_path / "mqtt.yaml", {
        "broker": {"client_id": unique("host")},
        "sparkplug": [{"group": group, "location": "L-SPB"}]})
    collector = CollectorProcess(db_url(mqtt_db), path)
    edge = EdgeNode(group, "N1")
    try:
        ts = iter(range(T0, T0 + 10**6, 1000))
        edge.births(0, next(ts))
        for i in range(1, 11):
            edge.node_data(i, next(ts))
            edge.device_data(i, next(ts))
        # a sequence gap: one number skipped (a message the broker lost)
        edge.device_data(11, next(ts), skip=1)
        wait_for(lambda: edge.rebirth_requests >= 1, "the host's rebirth request (NCMD)")
        edge.births(12, next(ts))
        # the host killed mid-stream; the node goes on (sequence wraps past 255)
        for i in range(13, 60):
            edge.node_data(i, next(ts))
            edge.device_data(i, next(ts))
            if i == 30:
                wait_for(lambda: len(_good(mqtt_db, group)) > 40, "points stored")
                collector.kill()
                collector = CollectorProcess(db_url(mqtt_db), path)
        for i in range(60, 320):  # past 255: the sequence wraps
            edge.node_data(i, next(ts))
        wait_for(lambda: _good(mqtt_db, group) == edge.published, "every value once")
        device_death = next(ts)
        edge.device_death(device_death)
        edge.drop()  # the broker publishes the node's will: NDEATH
        wait_for(lambda: len([r for r in samples(mqtt_db, group) if r["quality"] == BAD])
                 == len(NODE_METRICS) + len(DEVICE_METRICS), "the deaths' bad points")
    finally:
        collector.stop()
        edge.close()
    rows = samples(mqtt_db, group)
    good = [r for r in rows if r["quality"] == GOOD]
    assert len(good) == len(edge.published)  # every value exactly once, nothing extra
    assert _good(mqtt_db, group) == edge.published
    assert edge.rebirth_requests == 1
    bad = [r for r in rows if r["quality"] == BAD]
    device = {(r["name"], r["reason"]) for r in bad if r["device"] == edge.device_key}
    assert device == {(m.name, "device offline (DDEATH)") for m in DEVICE_METRICS}
    assert {int(r["ts"].timestamp() * 1000) for r in bad
            if r["device"] == edge.device_key} == {device_death}
    node = {(r["name"], r["reason"]) for r in bad if r["device"] == edge.node_key}
    assert node == {(m.name, "node offline (NDEATH)") for m in NODE_METRICS}
    assert {r["source_name"] for r in rows if r["name"] == "Pressure"} == \
        {f"spBv1.0/{edge.device_key}:Pressure"}
