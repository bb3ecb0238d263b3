"""Sparkplug B into tag samples against the real Mosquitto and PostgreSQL
(docs/mqtt.md): births name the metrics, data arrives by alias, a sequence gap asks the
node for a rebirth, a collector killed mid-stream loses and duplicates nothing (its
alias table is in the warehouse), device and node deaths mark their tags bad, a will
queued between two runs goes before the node's rebirth, and a state table of an earlier
version is upgraded in place."""

import time
from pathlib import Path

from sqlalchemy import Engine, inspect, select, text

from shopfloor.db.engine import make_engine
from shopfloor.mqtt.sparkplug import state_tables
from tests.integration.mqtt.conftest import (
    CollectorProcess,
    Publisher,
    config,
    db_url,
    running,
    samples,
    unique,
    wait_for,
    write_config,
)
from tests.integration.mqtt.edge import DEVICE_METRICS, NODE_METRICS, EdgeNode
from tests.pg import throwaway_database

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


class _Stamps:
    """Wall-clock epoch ms, strictly increasing: the times a live node gives its
    messages (the collector compares them with when it connected)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last = max(int(time.time() * 1000), self.last + 1)
        return self.last


def _by_tag(engine: Engine, group: str) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in samples(engine, group):  # ordered by device, name, time
        out.setdefault((r["device"], r["name"]), []).append(r)
    return out


def _ms(row: dict) -> int:
    return int(row["ts"].timestamp() * 1000)


N_TAGS = len(NODE_METRICS) + len(DEVICE_METRICS)


def _bad(engine: Engine, group: str) -> list[dict]:
    return [r for r in samples(engine, group) if r["quality"] == BAD]


def test_a_will_queued_between_runs_goes_before_the_nodes_rebirth(
        broker: tuple, mqtt_db: Engine) -> None:
    """The deployment's case: a run stores a node's birth and data and ends; while no
    run is connected the node drops (the broker queues its will, an NDEATH, for the
    collector's session) and is born again (next bdSeq) with new data; the next run
    gets the will first, then the rebirth. The offline point goes 1 ms after the old
    session's last message, before the rebirth's values, and every tag ends good
    (before: at the second run's receive time, after the rebirth's values)."""
    group = unique("plant")
    cfg = config(unique("host"), sparkplug=[{"group": group, "location": "L-SPB"}])
    stamp = _Stamps()
    wills = Publisher()
    wills.subscribe(f"spBv1.0/{group}/NDEATH/#")
    old = EdgeNode(group, "N1", bdseq=0)
    new: EdgeNode | None = None
    try:
        with running(cfg, mqtt_db):
            old.births(0, stamp())
            for i in range(1, 4):
                old.node_data(i, stamp())
                old.device_data(i, stamp())
            wait_for(lambda: _good(mqtt_db, group) == old.published, "the first session")
        old_last = stamp.last  # the old session's last message
        # No run connected: the node drops, the broker queues its will for the session.
        old.drop()
        wait_for(lambda: wills.received, "the broker to publish the node's will")
        new = EdgeNode(group, "N1", bdseq=1)
        reborn = stamp()
        new.births(10, reborn)
        new.node_data(11, stamp())
        new.device_data(11, stamp())
        with running(cfg, mqtt_db) as (_collector, stats):
            wait_for(lambda: _good(mqtt_db, group) == {**old.published, **new.published}
                     and len(_bad(mqtt_db, group)) == N_TAGS,
                     "both sessions and the death stored")
    finally:
        wills.close()
        old.close()
        if new is not None:
            new.close()
    assert stats[0].sparkplug.deaths == 1
    tags = _by_tag(mqtt_db, group)
    assert len(tags) == N_TAGS
    for (device, name), rows in tags.items():
        bad = [r for r in rows if r["quality"] == BAD]
        assert [(r["reason"], _ms(r)) for r in bad] == \
            [("node offline (NDEATH)", old_last + 1)], (device, name)
        old_values = [_ms(r) for r in rows if r["quality"] == GOOD and _ms(r) < reborn]
        new_values = [_ms(r) for r in rows if r["quality"] == GOOD and _ms(r) >= reborn]
        assert old_values and new_values, (device, name)
        assert max(old_values) < _ms(bad[0]) < min(new_values), (device, name, rows)
        assert rows[-1]["quality"] == GOOD, (device, name, rows[-1])  # online again


def test_a_will_that_arrives_while_the_collector_is_connected_keeps_its_receive_time(
        broker: tuple, mqtt_db: Engine) -> None:
    group = unique("plant")
    cfg = config(unique("host"), sparkplug=[{"group": group}])
    stamp = _Stamps()
    node = EdgeNode(group, "N1")
    try:
        with running(cfg, mqtt_db):
            node.births(0, stamp())  # after the collector connected: live messages
            node.node_data(1, stamp())
            node.device_data(1, stamp())
            wait_for(lambda: _good(mqtt_db, group) == node.published, "the node's values")
            dropped = int(time.time() * 1000)
            node.drop()
            wait_for(lambda: len(_bad(mqtt_db, group)) == N_TAGS, "the will's bad points")
            seen = int(time.time() * 1000)
    finally:
        node.close()
    (ms,) = {_ms(r) for r in _bad(mqtt_db, group)}
    assert stamp.last + 1 < dropped <= ms <= seen  # when it came, not the last message's


def test_a_state_table_of_an_earlier_version_is_upgraded_and_keeps_its_state(
        broker: tuple, pg_server_url: str) -> None:
    """``sparkplug_edge`` as collectors before ``last_heard_ms`` made it, with a node's
    state and its aliases: the next collector adds the column at its start and keeps
    the rows, so the node's data by alias (no new birth) still resolves."""
    group = unique("plant")
    with throwaway_database(pg_server_url, "shopfloor_spb_upgrade") as url:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(
                    "CREATE TABLE sparkplug_edge (edge VARCHAR(255) PRIMARY KEY, "
                    "online BOOLEAN NOT NULL, bdseq BIGINT, seq INTEGER, "
                    "updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL)"))
                conn.execute(text(
                    "CREATE TABLE sparkplug_metric (edge VARCHAR(255), name VARCHAR(255), "
                    "alias BIGINT, datatype INTEGER NOT NULL, PRIMARY KEY (edge, name))"))
                conn.execute(text("INSERT INTO sparkplug_edge VALUES "
                                  "(:n, true, 0, 5, '2026-09-21 14:13:20')"),
                             {"n": f"{group}/N1"})
                conn.execute(text("INSERT INTO sparkplug_metric VALUES (:e, :n, :a, :t)"),
                             [{"e": f"{group}/N1", "n": m.name, "a": m.alias, "t": m.datatype}
                              for m in NODE_METRICS])
            node = EdgeNode(group, "N1", bdseq=0)
            node.seq = 5  # the session goes on where the stored state left it
            cfg = config(unique("host"), sparkplug=[{"group": group}])
            try:
                with running(cfg, engine):
                    columns = {c["name"] for c in inspect(engine).get_columns(
                        "sparkplug_edge")}
                    ts = int(time.time() * 1000)
                    node.node_data(6, ts)
                    wait_for(lambda: _good(engine, group) == node.published,
                             "the data resolved by the stored aliases")
            finally:
                node.close()
            edges, metrics = state_tables(None)
            with engine.connect() as conn:
                rows = conn.execute(select(edges.c.edge, edges.c.online, edges.c.bdseq,
                                           edges.c.seq, edges.c.last_heard_ms)).all()
                aliases = {r.name: r.alias for r in conn.execute(select(metrics))}
        finally:
            engine.dispose()
    assert "last_heard_ms" in columns
    assert [tuple(r) for r in rows] == [(f"{group}/N1", True, 0, 6, ts)]
    assert aliases == {m.name: m.alias for m in NODE_METRICS}
    assert node.rebirth_requests == 0
