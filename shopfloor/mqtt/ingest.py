"""The MQTT collector: subscribe with QoS 1 on a persistent session, turn each message
into tag samples, store a batch in one warehouse transaction, and only then acknowledge
its messages (docs/mqtt.md).

Why the broker is the buffer here (and not the collector's SQLite buffer): with QoS 1
and a session that outlives the connection (fixed client id, ``clean_start`` false, a
session expiry), a message the collector has not acknowledged stays with the broker and
is sent again when the collector is back, whether it crashed, was stopped at the end of
its window or could not reach the warehouse. Acknowledging only after the commit means
no message is lost between the broker and the warehouse, and a second local copy would
add a write per message without closing any gap. What this relies on is the broker's
own limits (``max_queued_messages`` and the session expiry, docs/mqtt.md).
"""

import gc
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.errors import ShopfloorError
from shopfloor.modbus.tag_points import ensure_tag_tables
from shopfloor.mqtt import json_messages
from shopfloor.mqtt.config import SPARKPLUG_NAMESPACE, MqttConfig
from shopfloor.mqtt.deliveries import Deliveries, Entry
from shopfloor.mqtt.points import PointBatch, copies, copy_data, write_tag_points
from shopfloor.mqtt.sparkplug import (
    Counters,
    SparkplugHost,
    Topic,
    parse_topic,
    rebirth_request,
)
from shopfloor.mqtt.sparkplug_b_pb2 import Payload
from shopfloor.tags.registry import TagInfo, register_tags

log = logging.getLogger(__name__)

MAX_BATCH = 250  # messages per transaction at most
# Messages per batch while the writer is idle (the run's first batch, a quiet topic): the
# warehouse gets to work sooner. A broker's burst of kept messages arrives faster than it
# is decoded (measured: 900 messages in 26 ms), so a full first batch kept the writer
# idle for its decoding, about a tenth of the burst's time.
IDLE_BATCH = 50
BATCH_WAIT_SECONDS = 0.2  # how long an empty queue is waited on before checking the clock
CONNECT_TIMEOUT_SECONDS = 15.0
# The broker may send this many unacknowledged QoS 1 messages at once (MQTT 5 Receive
# Maximum); they are acknowledged a batch at a time, after the commit.
RECEIVE_MAXIMUM = 1000
MAX_TOPICS_TIMED = 100_000  # topics whose last receive time is kept (forgotten past it)


@dataclass(frozen=True)
class Message:
    """A message as received, with the connection it came on (an acknowledgement is
    only valid on that connection: after a reconnect the broker sends it again)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    connection: int
    dup: bool = False  # the broker sends it again (it was not acknowledged)
    # When that connection was accepted (epoch ms): a Sparkplug B node last heard
    # before it may have died while no collector was connected (its will was queued).
    connected_ms: int | None = None


@dataclass
class IngestStats:
    """What a run did."""

    received: int = 0  # messages stored and acknowledged
    written: int = 0  # points written to tag_samples
    bad: int = 0
    uncertain: int = 0
    unmatched: int = 0  # messages no mapping or group took
    batches: int = 0
    write_errors: int = 0
    last_error: str = ""
    left_with_broker: int = 0  # received, not stored when the run ended: sent again next run
    sparkplug: Counters = field(default_factory=Counters)

    def as_row(self) -> dict[str, object]:
        row = {k: v for k, v in asdict(self).items() if k != "sparkplug"}
        row.update(asdict(self.sparkplug))
        return row


class Decoder:
    """Messages to tag points, in arrival order (Sparkplug B's state follows them)."""

    def __init__(self, config: MqttConfig, host: SparkplugHost,
                 deliveries: Deliveries | None = None):
        self.config = config
        self.host = host
        self.plans: json_messages.Plans = {}
        self.deliveries = (deliveries if deliveries is not None
                           else Deliveries(config.broker.client_id))

    def add(self, msg: Message, batch: PointBatch,
            recorded: list[Entry] | None = None) -> bool:
        """Add the message's points to ``batch``; False when no mapping or group takes
        it. A message stored at its receive time adds its delivery entry to ``recorded``
        (saved with the batch: a redelivery finds that time again)."""
        if msg.topic.startswith(SPARKPLUG_NAMESPACE + "/"):
            topic = parse_topic(msg.topic)
            if topic is None or topic.group not in self.host.groups:
                return False
            try:
                payload = Payload.FromString(msg.payload)
            except Exception:  # noqa: BLE001 - protobuf raises DecodeError or others
                log.warning("%s: not a Sparkplug B payload (%d bytes)", msg.topic,
                            len(msg.payload))
                return False
            batch.add_points(self.host.message(topic, payload, msg.received_ms,
                                               msg.connected_ms))
            return True
        route = json_messages.route(self.config.json_topics, msg.topic)
        if route is None:
            return False
        row = json_messages.good_row(route, msg.topic, msg.payload, self.plans)
        if row is not None:  # stamped by the message itself: a redelivery has its time
            batch.add_row(*row)
            return True
        received = msg.received_ms
        if msg.qos > 0:  # a redelivery of a message stored at its receive time keeps it
            received = self.deliveries.receive_time(msg.topic, msg.payload, msg.mid,
                                                    msg.dup, received)
        points = json_messages.message_points(route, msg.topic, msg.payload, received,
                                              self.plans)
        if msg.qos > 0 and points and points[0].ms == received:  # keyed on that time
            entry = self.deliveries.record(msg.topic, msg.payload, msg.mid, received)
            if recorded is not None:
                recorded.append(entry)
        batch.add_message(points, json_messages.mapping_tags(route, msg.topic, self.plans))
        return True


@dataclass
class Decoded:
    """A batch of messages decoded, waiting to be stored."""

    messages: list[Message]
    points: PointBatch
    unmatched: int
    sparkplug: bool  # has Sparkplug B messages: it moved the host's state
    saved: Counters  # the host's counters before it, for a rollback
    rebirths: list[Topic]  # rebirth requests to publish once it is stored
    deliveries: list[Entry] = field(default_factory=list)  # receive times kept
    data: bytes | None = None  # the points' COPY data, when rendered while decoding


class Writer:
    """One batch of messages into the warehouse in one transaction: new tags registered,
    Sparkplug B's state saved, the points upserted on ``(tag_id, ts)``."""

    def __init__(self, engine: Engine, tables: Tables, decoder: Decoder):
        self.engine = engine
        self.tables = tables
        self.decoder = decoder
        self.ids: dict[tuple[str, str], int] = {}
        self._registered: dict[tuple[str, str], TagInfo] = {}
        # Both stages register tags (see _render): their additions are merged under it.
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the tables where missing; read Sparkplug B's state and the receive
        times of the session's last messages."""
        ensure_tag_tables(self.engine, self.tables)
        for ddl in self.decoder.host.create_tables(self.engine):
            log.info("Sparkplug B state table upgraded: %s", ddl)
        self.decoder.deliveries.create_table(self.engine)
        with self.engine.connect() as conn:
            self.decoder.host.load(conn)
            self.decoder.deliveries.load(conn)

    def decode(self, batch: list[Message]) -> Decoded:
        """The batch's points. A batch with Sparkplug B messages moves the host's state
        (undone by :meth:`commit` if the batch cannot be stored); a JSON-only batch
        leaves it alone, so it can be decoded while the previous batch is written."""
        host = self.decoder.host
        sparkplug = any(m.topic.startswith(SPARKPLUG_NAMESPACE + "/") for m in batch)
        saved = Counters(**asdict(host.counters))
        if sparkplug:
            host.begin()
        points = PointBatch()
        unmatched = 0
        recorded: list[Entry] = []
        try:
            for msg in batch:
                if not self.decoder.add(msg, points, recorded):
                    unmatched += 1
        except Exception:
            if sparkplug:
                host.rollback(saved)
            raise
        return Decoded(batch, points, unmatched, sparkplug, saved,
                       list(host.rebirths) if sparkplug else [], recorded,
                       self._render(points))

    def _render(self, points: PointBatch) -> bytes | None:
        """The batch's ``COPY`` data, rendered here, in the decoding stage, so that the
        writing stage (the bottleneck: measured at 70-100 ms a batch of 250 messages of
        100 values, 85 % of it the ``COPY``) only sends it; None when the batch's tags
        are not all registered yet (their ids come with the commit) or it does not go
        by ``COPY``. Its ``ingested_at`` is the decoding time, a batch's commit before
        the write: within the lake export's lag (``shopfloor.tags.lake_export``).

        Tags it meets for the first time (a run's first batches: the writer registers
        the batch before it at the same time) are registered here, in a transaction
        of their own: a tag registered without samples (the batch's commit failing
        after it) is harmless, and is registered again with its redelivery. Only JSON
        batches go by ``COPY`` (Sparkplug B's points may repeat a key), so a
        Sparkplug B rebirth still registers its tags with its samples."""
        if not copies(self.engine, points):
            return None
        new = self._new_tags(points.tags.values())
        if new:  # a JSON batch's tags: registered now, in a transaction of their own
            with self.engine.begin() as conn:
                self._remember(new, self._register(conn, new))
        ids = self.ids  # replaced whole, never changed in place (see _remember)
        id_of = {k: ids[(t.device, t.name)] for k, t in points.tags.items()}
        return copy_data(points, id_of, utcnow())

    def commit(self, d: Decoded, stats: IngestStats) -> None:
        """Store a decoded batch in one transaction; on an error nothing of it is kept
        (the host's state included: decode the batch again) and it raises."""
        host = self.decoder.host
        try:
            new = self._new_tags(d.points.tags.values())
            with self.engine.begin() as conn:
                found = self._register(conn, new)
                ids = {**self.ids, **found} if found else self.ids
                if d.sparkplug:
                    host.save(conn)
                self.decoder.deliveries.save(conn, d.deliveries)
                id_of = {k: ids[(t.device, t.name)] for k, t in d.points.tags.items()}
                written = write_tag_points(conn, self.tables.tag_samples, d.points, id_of,
                                           utcnow(), d.data)
        except Exception:
            if d.sparkplug:
                host.rollback(d.saved)
            raise
        self._remember(new, found)
        stats.received += len(d.messages)
        stats.unmatched += d.unmatched
        stats.written += written.points
        stats.bad += written.bad
        stats.uncertain += written.uncertain
        stats.batches += 1
        stats.sparkplug = host.counters

    def _register(self, conn: Connection, new: list[TagInfo]) -> dict[tuple[str, str], int]:
        """Register ``new`` in ``conn``'s transaction, a device at a time; their ids."""
        found: dict[tuple[str, str], int] = {}
        for device in sorted({t.device for t in new}):
            found.update(register_tags(conn, self.tables.tags,
                                       [t for t in new if t.device == device]))
        return found

    def _remember(self, new: list[TagInfo], found: dict[tuple[str, str], int]) -> None:
        """Known from now on (once their transaction committed). ``ids`` is replaced,
        not changed: the other stage may be reading the old one."""
        if not new:
            return
        with self._lock:
            self.ids = {**self.ids, **found}
            self._registered.update({(t.device, t.name): t for t in new})

    def _new_tags(self, tags: Iterable[TagInfo]) -> list[TagInfo]:
        """Tags not registered yet in this process, or whose description changed (a
        Sparkplug B rebirth with another data type)."""
        new: dict[tuple[str, str], TagInfo] = {}
        for tag in tags:
            key = (tag.device, tag.name)
            known = self._registered.get(key)
            if known is not tag and known != tag:
                new[key] = tag
        return list(new.values())


class Collector:
    """A paho client on a persistent session feeding :class:`Writer` batch by batch."""

    def __init__(self, config: MqttConfig, engine: Engine, tables: Tables,
                 clock: Callable[[], float] = time.time,
                 logger: logging.Logger | logging.LoggerAdapter | None = None):
        self.config = config
        self.log = logger or log
        self.host = SparkplugHost(config.sparkplug, tables.schema)
        self.writer = Writer(engine, tables, Decoder(
            config, self.host, Deliveries(config.broker.client_id, tables.schema)))
        self.clock = clock
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.connection = 0
        self.connected = threading.Event()
        self._last_ms: dict[str, int] = {}  # the last receive time given per topic
        self._connected_ms: int | None = None  # when the current connection was accepted
        self.connect_error = ""
        self.refused = ""  # a subscription the broker refused
        self.stats = IngestStats()  # the current run's, as it goes
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        b = self.config.broker
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=b.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if b.username:
            client.username_pw_set(b.username, os.environ.get(b.password_env or "", None))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: mqtt.ReasonCode, _props: object) -> None:
        if reason.is_failure:
            self.connect_error = str(reason)
            return
        self.connection += 1
        # The session is back from here: a message published later reaches us live.
        self._connected_ms = int(time.time() * 1000)
        # noLocal: our own rebirth requests (NCMD) are not sent back to us; retained
        # messages only for a new subscription (not again on every reconnect).
        options = SubscribeOptions(qos=1, noLocal=True, retainHandling=1)
        client.subscribe([(t, options) for t in self.config.subscriptions()])

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int,
                      reasons: list[mqtt.ReasonCode], _props: object) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.connect_error = f"subscription refused: {', '.join(refused)}"
            self.refused = self.connect_error  # ends a run already ingesting (see run)
            return
        # Connected means subscribed: a new session's subscriptions exist from here on.
        self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Message(msg.topic, msg.payload, msg.mid, msg.qos,
                               self._receive_ms(msg.topic), self.connection, bool(msg.dup),
                               self._connected_ms))
        if not self.connected.is_set():
            # A resumed session's kept messages come right after the CONNACK, ahead of
            # the SUBACK (behind them in the stream: 27 ms for 900 messages of 100
            # values): they show the session's subscriptions are there, so the run
            # starts storing them now rather than after the SUBACK.
            self.connected.set()

    def _receive_ms(self, topic: str) -> int:
        """Now in epoch ms, at least 1 ms after the last message of ``topic``: a message
        stored at its receive time is keyed on it, and the broker sends what it kept
        for the session in a burst (hundreds a millisecond), where two messages of one
        topic in the same millisecond would overwrite each other's points. A topic
        sending faster than 1,000 messages a second drifts ahead of the clock."""
        now = int(time.time() * 1000)
        last = self._last_ms.get(topic)
        if last is not None and now <= last:
            now = last + 1
        elif last is None and len(self._last_ms) >= MAX_TOPICS_TIMED:
            self._last_ms.clear()
        self._last_ms[topic] = now
        return now

    def connect(self) -> None:
        """Connect on the persistent session (``clean_start`` false) and subscribe
        (returns once the broker acknowledged the subscriptions, or sent a message of
        them); the broker then sends what it kept for this client id.

        Raises:
            ShopfloorError: the broker refused a subscription, or did not accept the
                client and its subscriptions in time.
        """
        b = self.config.broker
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = b.session_expiry_seconds
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.writer.prepare()
        self.client.connect_async(b.host, b.port, keepalive=b.keepalive_seconds,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
        while not self.connected.wait(0.05) and not self.refused \
                and time.monotonic() < deadline:
            pass
        if self.refused or not self.connected.is_set():
            self.client.disconnect()
            self.client.loop_stop()
            if self.refused:
                raise ShopfloorError(f"MQTT broker {b.host}:{b.port} refused client "
                                     f"{b.client_id}'s {self.refused}")
            raise ShopfloorError(f"MQTT broker {b.host}:{b.port} did not accept client "
                                 f"{b.client_id} and its subscriptions within "
                                 f"{CONNECT_TIMEOUT_SECONDS:.0f} s"
                                 f"{': ' + self.connect_error if self.connect_error else ''}")

    def close(self) -> None:
        """Disconnect; messages not acknowledged stay with the broker's session."""
        self.client.disconnect()
        self.client.loop_stop()

    def _take(self, timeout: float, limit: int = MAX_BATCH) -> list[Message]:
        try:
            first = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < limit:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store(self, d: Decoded, stats: IngestStats, until: float) -> bool:
        """Write a decoded batch, retrying with a back-off until it is stored or
        ``until`` passes; then acknowledge its messages and send its rebirth requests.
        False: not stored."""
        delay = 0.5
        while True:
            try:
                self.writer.commit(d, stats)
                break
            except SQLAlchemyError as exc:
                stats.write_errors += 1
                stats.last_error = str(exc).splitlines()[0][:300]
                if stats.write_errors == 1:
                    self.log.warning("warehouse write failed (%s): retrying; the broker "
                                     "keeps the messages until they are stored",
                                     stats.last_error)
                if self.clock() + delay >= until:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                if d.sparkplug:  # the host's state was rolled back: decode it again
                    d = self.writer.decode(d.messages)
        for msg in d.messages:
            # An acknowledgement on a later connection would acknowledge another
            # message: the broker resends these, and their repeat overwrites.
            if msg.qos > 0 and msg.connection == self.connection:
                self.client.ack(msg.mid, msg.qos)
        for topic in d.rebirths:
            self.client.publish(f"{SPARKPLUG_NAMESPACE}/{topic.group}/NCMD/{topic.node}",
                                rebirth_request(), qos=0)
        return True

    def run(self, duration_seconds: float, stop: threading.Event | None = None,
            on_connected: Callable[[], None] | None = None) -> IngestStats:
        """Ingest for ``duration_seconds`` (or until ``stop`` is set), then disconnect.

        Two stages: this thread takes and decodes a batch while a committer thread
        writes the previous one (the warehouse's time overlaps the decoding); batches
        are stored and acknowledged in the order they arrived. A batch with Sparkplug
        B messages is decoded only once the committer is idle, since it moves the
        host's state that the previous batch's commit saves.
        """
        stats = self.stats = IngestStats()
        until = self.clock() + duration_seconds
        self.connect()
        if on_connected is not None:
            on_connected()
        committer = _Committer(self, stats, until)
        # A batch makes hundreds of thousands of short-lived objects (points, their
        # CSV) without reference cycles: the cyclic collector would walk them again
        # and again (measured: half the decoding time). Paused for the run, with a
        # young-generation pass after each batch and a full one every minute.
        collecting = gc.isenabled()
        gc.disable()
        last_full = time.monotonic()
        try:
            while self.clock() < until and not (stop is not None and stop.is_set()) \
                    and not committer.failed and not self.refused:
                batch = self._take(min(BATCH_WAIT_SECONDS, max(until - self.clock(), 0.0)),
                                   IDLE_BATCH if committer.idle() else MAX_BATCH)
                if not batch:
                    continue
                if any(m.topic.startswith(SPARKPLUG_NAMESPACE + "/") for m in batch):
                    committer.wait_idle()
                    if committer.failed:
                        stats.left_with_broker += len(batch)
                        break
                committer.put(self.writer.decode(batch))
                gc.collect(0)
                if time.monotonic() - last_full > 60:
                    gc.collect()
                    last_full = time.monotonic()
            committer.finish()
            if committer.failed or self.refused:
                stats.left_with_broker += self.inbox.qsize()
            if self.refused:  # after what was taken is stored and acknowledged
                raise ShopfloorError(f"MQTT broker {self.config.broker.host}:"
                                     f"{self.config.broker.port} refused client "
                                     f"{self.config.broker.client_id}'s {self.refused}")
        finally:
            if committer.thread.is_alive():  # the loop broke: stop the committer too
                committer.queue.put(None)
                committer.thread.join()
            if collecting:
                gc.enable()
            self.close()
        return stats


class _Committer:
    """The writing stage: one decoded batch at a time, in order, on its own thread;
    at most one more waits (the queue's bound keeps memory flat)."""

    def __init__(self, collector: Collector, stats: IngestStats, until: float):
        self.collector, self.stats, self.until = collector, stats, until
        self.failed = False
        self.error: BaseException | None = None
        self.queue: queue.Queue[Decoded | None] = queue.Queue(maxsize=1)
        self.thread = threading.Thread(target=self._loop, name="mqtt-committer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (d := self.queue.get()) is not None:
            try:
                if self.failed:
                    self.stats.left_with_broker += len(d.messages)
                elif not self.collector._store(d, self.stats, self.until):
                    self.failed = True
                    self.stats.left_with_broker += len(d.messages)
            except Exception as exc:  # noqa: BLE001 - reported by the run, not lost
                self.failed = True
                self.error = exc
                self.stats.left_with_broker += len(d.messages)
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def put(self, d: Decoded) -> None:
        self.queue.put(d)

    def wait_idle(self) -> None:
        self.queue.join()

    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return self.queue.unfinished_tasks == 0

    def finish(self) -> None:
        """Store what is queued, then stop the thread; re-raise what broke it."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def ingest(config: MqttConfig, engine: Engine, tables: Tables, duration_seconds: float,
           logger: logging.Logger | logging.LoggerAdapter | None = None) -> IngestStats:
    """Run a collector for ``duration_seconds``; what it did."""
    return Collector(config, engine, tables, logger=logger).run(duration_seconds)
