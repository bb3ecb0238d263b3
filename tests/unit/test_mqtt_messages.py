"""Messages to points without a broker: JSON paths, timestamps and quality; the
Sparkplug B host's rules (sequence, replays, deaths, aliases, data types)."""

import json

import pytest

from shopfloor.mqtt.config import JsonTopic, SparkplugGroup
from shopfloor.mqtt.json_messages import epoch_ms, message_points
from shopfloor.mqtt.sparkplug import SparkplugHost, metric_value, parse_topic
from shopfloor.mqtt.sparkplug_b_pb2 import Payload

T0 = 1_790_000_000_000


@pytest.mark.parametrize(("raw", "ms"), [
    (1_790_000_000, T0), (1_790_000_000.5, T0 + 500), (T0, T0),
    ("2026-09-21T14:13:20Z", 1_790_000_000_000), ("2026-09-21T14:13:20", 1_790_000_000_000),
    ("2026-09-21T16:13:20+02:00", 1_790_000_000_000), ("yesterday", None), (True, None),
    (None, None), ({"a": 1}, None),
])
def test_timestamps_are_epoch_seconds_or_ms_or_iso(raw: object, ms: int | None) -> None:
    assert epoch_ms(raw) == ms


def _route(**kw: object) -> JsonTopic:
    return JsonTopic.model_validate({"topic": "a/+", "timestamp": "ts", "tags": [
        {"name": "x", "path": "d.x", **kw}, {"name": "s", "path": "s", "data_type": "string"}]})


def test_a_message_without_its_timestamp_is_uncertain_at_the_receive_time() -> None:
    points = message_points(_route(), "a/b", json.dumps({"d": {"x": 1}, "s": "t"}).encode(), 5)
    assert [(p.ms, p.quality, p.reason) for p in points] == [
        (5, 64, "no valid timestamp in the message: receive time")] * 2


@pytest.mark.parametrize(("value", "quality", "reason"), [
    (1.5, 192, None), ("1.5", 0, "not a number"), (True, 0, "not a number"),
    (None, 0, "missing in the message"), (float("nan"), 0, "not a finite number"),
    (11, 0, "out of range [0, 10]"),
])
def test_each_value_is_judged_on_its_own(value: object, quality: int, reason: str) -> None:
    body = json.dumps({"ts": T0, "d": {"x": value}, "s": "ok"}).encode()
    x, s = message_points(_route(min_value=0, max_value=10), "a/b", body, 5)
    assert (x.ms, x.quality, x.reason) == (T0, quality, reason)
    assert (s.quality, s.text) == (192, "ok")  # the other value stays good
    assert x.tag.device == "a/b" and x.tag.source_name == "a/b:d.x"


def _payload(seq: int | None = None, **metrics: tuple[int, int, float]) -> Payload:
    p = Payload(timestamp=T0)
    if seq is not None:
        p.seq = seq
    for name, (alias, datatype, value) in metrics.items():
        m = p.metrics.add()
        m.name, m.alias, m.datatype = name, alias, datatype
        if datatype == 8:
            m.long_value = int(value)
        else:
            m.double_value = value
    return p


def _host() -> SparkplugHost:
    host = SparkplugHost([SparkplugGroup(group="g")])
    host.begin()
    host.message(parse_topic("spBv1.0/g/NBIRTH/n"), _payload(0, bdSeq=(0, 8, 3), t=(1, 10, 1.0)),
                 T0)
    return host


def _data(alias: int, seq: int) -> Payload:
    p = Payload(timestamp=T0 + seq, seq=seq)
    m = p.metrics.add()
    m.alias, m.double_value = alias, float(seq)
    return p


def test_a_redelivered_message_is_no_gap_and_a_skipped_number_is_one() -> None:
    host, ndata = _host(), parse_topic("spBv1.0/g/NDATA/n")
    assert [p.value for p in host.message(ndata, _data(1, 1), T0)] == [1.0]
    host.message(ndata, _data(1, 1), T0)  # the broker sent it again (not acknowledged)
    assert (host.counters.gaps, host.rebirths) == (0, [])
    host.message(ndata, _data(1, 3), T0)  # 2 lost
    host.message(ndata, _data(1, 5), T0)  # 4 lost: one request until the rebirth
    assert host.counters.gaps == 2
    assert [t.node for t in host.rebirths] == ["n"]


def test_an_unknown_alias_is_counted_and_asks_for_a_rebirth() -> None:
    host = _host()
    assert host.message(parse_topic("spBv1.0/g/NDATA/n"), _data(9, 1), T0) == []
    assert (host.counters.unresolved, len(host.rebirths)) == (1, 1)


def test_a_death_is_written_once_and_a_stale_will_not_at_all() -> None:
    host, death = _host(), parse_topic("spBv1.0/g/NDEATH/n")
    assert host.message(death, _payload(bdSeq=(0, 8, 2)), T0 + 5) == []  # an older session's
    (point,) = host.message(death, _payload(bdSeq=(0, 8, 3)), T0 + 5)
    assert (point.tag.name, point.ms, point.quality, point.reason) == \
        ("t", T0 + 5, 0, "node offline (NDEATH)")
    assert host.message(death, _payload(bdSeq=(0, 8, 3)), T0 + 9) == []  # redelivered


def test_a_queued_will_goes_after_the_nodes_last_message_a_live_one_when_it_came() -> None:
    """A will the broker queued while no collector was connected (the node last heard
    before the connection) is dated 1 ms after the node's last message, not at the next
    run's start: the node's rebirth in between keeps its own, later, times. A will
    that came while the collector was connected before the node's last message keeps
    its receive time."""
    death, ndata = parse_topic("spBv1.0/g/NDEATH/n"), parse_topic("spBv1.0/g/NDATA/n")
    host = _host()
    late = _data(1, 2)
    late.metrics[0].timestamp = T0 + 40  # a metric's time later than its payload's
    host.message(ndata, late, T0 + 50, connected_ms=T0 - 100)
    host.message(ndata, _data(1, 1), T0 + 60, connected_ms=T0 - 100)  # older: a replay
    assert host.edges["g/n"].last_heard == T0 + 40
    run_start = T0 + 3_600_000
    (point,) = host.message(death, _payload(bdSeq=(0, 8, 3)), run_start + 15,
                            connected_ms=run_start)
    assert (point.ms, point.reason) == (T0 + 41, "node offline (NDEATH)")
    reborn = host.message(parse_topic("spBv1.0/g/NBIRTH/n"),
                          _payload(0, bdSeq=(0, 8, 4), t=(1, 10, 2.0)), run_start + 16,
                          connected_ms=run_start)
    assert [p.ms for p in reborn] == [T0] and reborn[0].ms < run_start  # its own time
    assert host.edges["g/n"].last_heard == T0  # the new session's, not the old one's

    live = _host()
    live.message(ndata, _data(1, 1), T0 + 50, connected_ms=T0 - 100)
    (point,) = live.message(death, _payload(bdSeq=(0, 8, 3)), T0 + 900, connected_ms=T0 - 100)
    assert point.ms == T0 + 900


def test_a_device_death_keeps_its_own_time_and_without_one_is_timed_as_a_will() -> None:
    ddeath = parse_topic("spBv1.0/g/DDEATH/n/d")

    def host_with_device() -> SparkplugHost:
        host = _host()
        host.message(parse_topic("spBv1.0/g/DBIRTH/n/d"), _payload(1, p=(5, 10, 1.0)),
                     T0 + 1, connected_ms=T0 - 100)
        return host

    (own,) = host_with_device().message(ddeath, Payload(timestamp=T0 + 7, seq=2),
                                        T0 + 9_000_000, connected_ms=T0 + 8_000_000)
    assert (own.ms, own.reason) == (T0 + 7, "device offline (DDEATH)")
    (queued,) = host_with_device().message(ddeath, Payload(seq=2), T0 + 9_000_000,
                                           connected_ms=T0 + 8_000_000)
    assert queued.ms == T0 + 1  # the DBIRTH's time (T0) + 1 ms


def test_a_failed_batch_restores_the_last_heard_time() -> None:
    host = _host()
    saved = host.counters
    host.begin()
    host.message(parse_topic("spBv1.0/g/NDATA/n"), _data(1, 1), T0 + 5)
    assert host.edges["g/n"].last_heard == T0 + 1
    host.rollback(saved)
    assert host.edges["g/n"].last_heard == T0


def test_a_state_table_without_last_heard_gets_the_column_and_keeps_its_rows(tmp_path
                                                                            ) -> None:
    """The collector's start adds ``last_heard_ms`` to a ``sparkplug_edge`` of an
    earlier version; its rows stay, and a node's last-heard time is its row's
    ``updated_at`` until a message moves it (PostgreSQL: the integration test)."""
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    saved_at = datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE sparkplug_edge (edge VARCHAR(255) PRIMARY KEY, "
                          "online BOOLEAN NOT NULL, bdseq BIGINT, seq INTEGER, "
                          "updated_at DATETIME NOT NULL)"))
        conn.execute(text("INSERT INTO sparkplug_edge VALUES ('g/n', 1, 3, 7, :t), "
                          "('g/n/d', 1, NULL, NULL, :t)"), {"t": saved_at.replace(tzinfo=None)})
    host = SparkplugHost([SparkplugGroup(group="g")])
    added = host.create_tables(engine)
    assert added == ["ALTER TABLE sparkplug_edge ADD last_heard_ms BIGINT"]
    assert host.create_tables(engine) == []  # once
    assert "last_heard_ms" in {c["name"] for c in inspect(engine).get_columns("sparkplug_edge")}
    with engine.connect() as conn:
        host.load(conn)
    node, device = host.edges["g/n"], host.edges["g/n/d"]
    assert (node.online, node.bdseq, node.seq) == (True, 3, 7)
    assert node.last_heard == int(saved_at.timestamp() * 1000)
    assert device.online and device.last_heard is None
    host.begin()
    host.message(parse_topic("spBv1.0/g/NDATA/n"), _data(1, 8), T0)
    with engine.begin() as conn:
        host.save(conn)
    again = SparkplugHost([SparkplugGroup(group="g")])
    with engine.connect() as conn:
        again.load(conn)
    assert (again.edges["g/n"].seq, again.edges["g/n"].last_heard) == (8, T0 + 8)


def test_a_failed_batch_leaves_the_state_as_it_was() -> None:
    host = _host()
    saved = host.counters
    host.begin()
    host.message(parse_topic("spBv1.0/g/NDATA/n"), _data(1, 1), T0)
    host.rollback(saved)
    assert host.edges["g/n"].seq == 0


@pytest.mark.parametrize(("datatype", "field", "raw", "value"), [
    (1, "int_value", 0xFF, -1.0), (2, "int_value", 0x8000, -32768.0),
    (3, "int_value", 0xFFFFFFFE, -2.0), (4, "long_value", 2**64 - 3, -3.0),
    (7, "int_value", 0xFFFFFFFE, 4294967294.0), (11, "boolean_value", True, 1.0),
    (9, "float_value", 0.25, 0.25), (13, "long_value", T0, float(T0)),
])
def test_signed_types_are_read_from_twos_complement(datatype: int, field: str, raw: object,
                                                    value: float) -> None:
    m = Payload.Metric()
    setattr(m, field, raw)
    assert metric_value(m, datatype) == (value, None, None)


def test_text_null_and_unsupported_values() -> None:
    m = Payload.Metric(string_value="on")
    assert metric_value(m, 12) == (None, "on", None)
    assert metric_value(Payload.Metric(is_null=True), 10)[2] == "null value"
    assert metric_value(Payload.Metric(bytes_value=b"x"), 17)[2] == "unsupported data type"


def test_a_failed_batch_asks_for_its_rebirth_again_when_decoded_again() -> None:
    host = _host()
    saved = host.counters
    host.begin()
    host.message(parse_topic("spBv1.0/g/NDATA/n"), _data(1, 3), T0)  # a gap
    assert len(host.rebirths) == 1
    host.rollback(saved)
    host.begin()
    host.message(parse_topic("spBv1.0/g/NDATA/n"), _data(1, 3), T0)
    assert len(host.rebirths) == 1


def test_the_run_says_what_it_did_and_what_it_left_with_the_broker() -> None:
    from shopfloor.mqtt.ingest import IngestStats
    from shopfloor.mqtt.outcome import verdict

    stats = IngestStats(received=30, written=60, bad=1, write_errors=2)
    done = verdict(stats)
    assert done.kind == "completed"
    assert done.message == ("received 30 messages, wrote 60 points (1 bad, 0 uncertain); "
                            "2 warehouse write errors, retried and stored")
    stats.left_with_broker, stats.last_error = 12, "connection refused"
    left = verdict(stats)
    assert left.kind == "degraded"
    assert left.message.endswith("the warehouse failed (connection refused): 12 messages "
                                 "left with the broker for the next run")


def test_a_redelivery_keeps_the_receive_time_its_message_was_stored_at() -> None:
    """A message without a timestamp is keyed on its receive time; the broker's
    redelivery of it (DUP, same packet id, same topic and payload) gets that time again,
    so its points overwrite instead of landing twice. Another message under the packet
    id, a message not marked DUP, and a timestamped message take their own times."""
    from shopfloor.mqtt.config import parse_config
    from shopfloor.mqtt.deliveries import Deliveries, Entry
    from shopfloor.mqtt.ingest import Decoder, Message
    from shopfloor.mqtt.points import PointBatch

    cfg = parse_config({"broker": {"client_id": "c"}, "json": [
        {"topic": "plain/#", "tags": [{"name": "v", "path": "v"}]},
        {"topic": "stamped/#", "timestamp": "ts", "tags": [{"name": "v", "path": "v"}]}]})
    decoder = Decoder(cfg, SparkplugHost([]), Deliveries("c"))

    def times(*messages: Message) -> tuple[list[int], list[Entry]]:
        recorded: list[Entry] = []
        out = []
        for m in messages:
            batch = PointBatch()
            assert decoder.add(m, batch, recorded)
            out.append(batch.all_points()[0].ms)
        return out, recorded

    first = Message("plain/a", b'{"v": 1}', 7, 1, T0, 1)
    got, rows = times(first)
    assert got == [T0] and [(pid, ms) for pid, _d, ms in rows] == [(7, T0)]
    again = Message("plain/a", b'{"v": 1}', 7, 1, T0 + 900, 2, dup=True)
    other = Message("plain/a", b'{"v": 2}', 7, 1, T0 + 950, 2, dup=True)  # not the same
    fresh = Message("plain/a", b'{"v": 1}', 7, 1, T0 + 990, 2)  # not marked DUP
    assert times(again)[0] == [T0]
    assert times(other)[0] == [T0 + 950]
    assert times(fresh)[0] == [T0 + 990]
    stamped = Message("stamped/a", json.dumps({"ts": T0 + 5, "v": 1}).encode(), 8, 1,
                      T0 + 999, 1)
    assert times(stamped) == ([T0 + 5], [])  # its own time: nothing to keep


def test_the_kept_receive_times_survive_a_restart_and_stay_bounded(tmp_path) -> None:
    """What a collector saved, the next one (same client id) reads back; another client
    id's are not its; the table keeps the last KEEP entries (a redelivery can only be
    of the last messages the broker had in flight), one row a batch."""
    from sqlalchemy import create_engine

    from shopfloor.mqtt.deliveries import KEEP, Deliveries

    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    first, other = Deliveries("c"), Deliveries("other")
    first.create_table(engine)
    batch = 250
    for b in range(KEEP // batch * 2):  # twice what is kept, 250 a batch
        entries = [first.record("t", f"{b}-{i}".encode(), (b * batch + i) % 65535 + 1,
                                T0 + b * batch + i) for i in range(batch)]
        with engine.begin() as conn:
            first.save(conn, entries)
    with engine.begin() as conn:
        other.save(conn, [other.record("t", b"x", 1, 5)])
    later = Deliveries("c")
    with engine.connect() as conn:
        later.load(conn)
        assert KEEP <= first.kept(conn) < KEEP + batch
    last = 2 * KEEP - 1
    assert later.recorded == 2 * KEEP
    assert later.receive_time("t", f"{last // batch}-{last % batch}".encode(),
                              last % 65535 + 1, True, 0) == T0 + last
    assert later.receive_time("t", b"x", 1, True, 9) == 9  # the other client's entry
