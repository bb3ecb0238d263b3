"""Plain JSON topics into tag samples against the real Mosquitto and PostgreSQL
(docs/mqtt.md): topic filters with wildcards, dotted paths, quality per point, the
message's timestamp as the key, every value once however often it arrives."""

import json
import threading

from sqlalchemy import Engine

from tests.integration.mqtt.conftest import (
    Publisher,
    config,
    running,
    samples,
    unique,
    wait_for,
)

T0 = 1_790_000_000_000  # ms; the messages' own timestamps


def _json_config(root: str, client_id: str):
    return config(client_id, json=[{
        "topic": f"{root}/+/press/#",
        "location": "L-MQTT",
        "timestamp": "meta.ts",
        "tags": [
            {"name": "pressure", "path": "data.pressure", "unit": "bar",
             "min_value": 0, "max_value": 10},
            {"name": "running", "path": "data.running", "data_type": "bool"},
            {"name": "recipe", "path": "recipe", "data_type": "string"},
            {"name": "temp", "path": "data.temps.1"},
        ]}])


def test_json_messages_land_as_tag_samples_once_each_with_quality_per_point(
        broker: tuple, mqtt_db: Engine) -> None:
    root = unique("plant")
    pub = Publisher()
    with running(_json_config(root, unique("collector")), mqtt_db) as (_c, stats):
        for i in range(20):
            body = {"meta": {"ts": T0 + i * 1000},
                    "data": {"pressure": i / 2, "running": i % 2 == 0, "temps": [0, 20 + i]},
                    "recipe": f"R{i}"}
            pub.publish(f"{root}/line1/press/a", json.dumps(body))
        # sent twice (a publisher's retry): lands once
        pub.publish(f"{root}/line1/press/a", json.dumps(
            {"meta": {"ts": T0}, "data": {"pressure": 0.0, "running": True, "temps": [0, 20]},
             "recipe": "R0"}))
        # a bad message: a missing path, a pressure that is text, one out of range
        pub.publish(f"{root}/line2/press/b", json.dumps(
            {"meta": {"ts": T0}, "data": {"pressure": "high", "running": 1}, "recipe": "X"}))
        pub.publish(f"{root}/line2/press/b", json.dumps(
            {"meta": {"ts": T0 + 1000}, "data": {"pressure": 99, "running": 0,
                                                 "temps": [1, 2]}, "recipe": "X"}))
        pub.publish(f"{root}/line2/press/b", b"not json")
        pub.publish(f"{root}/elsewhere", json.dumps({"x": 1}))  # not subscribed
        wait_for(lambda: len(samples(mqtt_db, root)) >= 80 + 8 + 4, "every point stored")
    pub.close()
    rows = samples(mqtt_db, root)
    line1 = [r for r in rows if r["device"] == f"{root}/line1/press/a"]
    assert len(line1) == 80  # 4 tags x 20 messages, the repeat overwrote
    by_tag = {n: [r for r in line1 if r["name"] == n] for n in ("pressure", "running",
                                                               "recipe", "temp")}
    assert [r["value"] for r in by_tag["pressure"]] == [i / 2 for i in range(20)]
    assert [r["value"] for r in by_tag["running"]] == [float(i % 2 == 0) for i in range(20)]
    assert [r["text_value"] for r in by_tag["recipe"]] == [f"R{i}" for i in range(20)]
    assert [r["value"] for r in by_tag["temp"]] == [20.0 + i for i in range(20)]
    assert [int(r["ts"].timestamp() * 1000) for r in by_tag["pressure"]] == \
        [T0 + i * 1000 for i in range(20)]
    assert {r["quality"] for r in line1} == {192}
    assert by_tag["pressure"][0]["source_name"] == f"{root}/line1/press/a:data.pressure"

    line2 = {(r["name"], int(r["ts"].timestamp() * 1000)): r for r in rows
             if r["device"] == f"{root}/line2/press/b"}
    assert line2[("pressure", T0)]["quality"] == 0
    assert line2[("pressure", T0)]["reason"] == "not a number"
    assert line2[("temp", T0)]["reason"] == "missing in the message"
    assert line2[("running", T0)]["quality"] == 192  # the message's other values stay good
    assert line2[("recipe", T0)]["text_value"] == "X"
    hi = line2[("pressure", T0 + 1000)]
    assert (hi["quality"], hi["value"], hi["reason"]) == (0, 99.0, "out of range [0, 10]")
    assert line2[("temp", T0 + 1000)]["value"] == 2.0
    not_json = [r for r in line2.values() if r["reason"] == "message is not a JSON object"]
    assert len(not_json) == 4  # every tag of the mapping, at the receive time
    (result,) = stats
    assert (result.received, result.unmatched) == (24, 0)  # 'elsewhere' was never sent to us
    assert result.written == 80 + 4 + 4 + 4 + 4  # the repeat is written again (overwrite)


def test_the_copy_path_writes_what_the_upsert_path_writes(mqtt_db: Engine) -> None:
    """A batch of 500 points and more goes by COPY (its own CSV); the same points
    again take the staged upsert; small batches the portable upsert: same rows."""
    from datetime import UTC, datetime

    from shopfloor.db.schema import get_tables
    from shopfloor.modbus.tag_points import ensure_tag_tables
    from shopfloor.mqtt.points import PointBatch, TagPoint, write_tag_points
    from shopfloor.tags.registry import TagInfo, register_tags

    t = get_tables()
    ensure_tag_tables(mqtt_db, t)
    device = unique("copy")
    infos = [TagInfo(f"t{k}", device, None, None, "float64", None, None) for k in range(3)]
    now = datetime(2026, 12, 1, tzinfo=UTC)

    def batch(n: int, shift: int) -> PointBatch:
        out: list[TagPoint] = []
        for i in range(n):
            out += [TagPoint(infos[0], T0 + shift + i, i * 0.1),
                    TagPoint(infos[1], T0 + shift + i, text='say "hi", ok'),
                    TagPoint(infos[2], T0 + shift + i, None, None, 0, "not a number")]
        points = PointBatch()
        points.add_points(out)
        return points

    def id_of(points: PointBatch) -> dict[int, int]:
        return {k: ids[(t.device, t.name)] for k, t in points.tags.items()}

    with mqtt_db.begin() as conn:
        ids = register_tags(conn, t.tags, infos)
        first, repeat, later = batch(200, 0), batch(200, 0), batch(50, 10**6)
        big = write_tag_points(conn, t.tag_samples, first, id_of(first), now)  # COPY
        again = write_tag_points(conn, t.tag_samples, repeat, id_of(repeat), now)  # staged
        small = write_tag_points(conn, t.tag_samples, later, id_of(later), now)  # upsert
    assert (big.points, big.bad, again.points, small.points) == (600, 200, 600, 150)
    rows = samples(mqtt_db, device)
    assert len(rows) == 750
    by_ts: dict[int, dict] = {}
    for r in rows:
        by_ts.setdefault(int(r["ts"].timestamp() * 1000) - T0, {})[r["name"]] = r
    for offset in (7, 10**6 + 7):
        got = by_ts[offset]
        assert got["t0"]["value"] == 7 * 0.1  # exact through repr
        assert got["t1"]["text_value"] == 'say "hi", ok' and got["t1"]["value"] is None
        assert (got["t2"]["quality"], got["t2"]["reason"], got["t2"]["value"]) == \
            (0, "not a number", None)


def test_a_burst_of_kept_messages_lands_exactly_through_the_pre_rendered_copy(
        broker: tuple, mqtt_db: Engine, monkeypatch) -> None:
    """The broker's burst of what it kept for the session (the collector away, as between
    two runs): each batch has its COPY text rendered while the previous one is written,
    the first one's tags registered as it is decoded (``Writer._render``). Every value
    lands once at its message's time, good, as a batch written the plain way does."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from shopfloor.mqtt.ingest import Writer

    root, client_id = unique("burst"), unique("collector")
    topic, tags, messages = f"{root}/dryer", 20, 400
    cfg = config(client_id, json=[{"topic": topic, "timestamp": "ts", "tags": [
        {"name": f"t{k}", "path": f"v.t{k}", "min_value": -1e9, "max_value": 1e9}
        for k in range(tags)]}])
    # The session exists with nobody connected: the broker keeps what is published.
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    session = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                          protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    session.on_subscribe = lambda *_a: subscribed.set()
    session.connect(*broker, clean_start=True, properties=props)
    session.loop_start()
    session.subscribe([(topic, SubscribeOptions(qos=1))])
    assert subscribed.wait(10)
    session.disconnect()
    session.loop_stop()
    pub = Publisher()
    for i in range(messages):
        pub.publish(topic, json.dumps({"ts": T0 + i, "v": {f"t{k}": i + k / 8
                                                           for k in range(tags)}}))
    pub.close()
    rendered: list[tuple[int, bool]] = []  # per batch: its points, rendered or not
    render = Writer._render
    monkeypatch.setattr(Writer, "_render", lambda self, points: rendered.append(
        (len(points), (data := render(self, points)) is not None)) or data)
    with running(cfg, mqtt_db):
        wait_for(lambda: len(samples(mqtt_db, root)) >= messages * tags, "every point")
    rows = samples(mqtt_db, root)
    # Every batch of 500 points or more (the first one's tags registered while it was
    # decoded) went by COPY with its text rendered before the writer took it; smaller
    # ones (the first messages, taken as they arrive) by the plain upsert.
    assert any(done for _, done in rendered), rendered
    assert all(done == (n >= 500) for n, done in rendered), rendered
    assert len(rows) == messages * tags
    got = {(r["name"], int(r["ts"].timestamp() * 1000)): (r["value"], r["quality"])
           for r in rows}
    assert got == {(f"t{k}", T0 + i): (i + k / 8, 192)
                   for i in range(messages) for k in range(tags)}
