"""Sparkplug B as tag points: births name the metrics (and give their aliases and data
types), data messages carry values by alias, sequence numbers 0..255 reveal lost
messages (a gap asks the node for a rebirth), deaths mark the node's or device's tags
bad (docs/mqtt.md).

The host's view of every edge node and device (online, birth sequence ``bdSeq``, last
``seq``, when the node was last heard, metric names, aliases and data types) is kept in
the warehouse (``sparkplug_edge``, ``sparkplug_metric``) and written in the same
transaction as the samples: a collector that restarts resolves the aliases of messages
the broker kept, a death redelivered after a crash is not written twice, and a will the
broker queued between two runs is dated from when its node was last heard.
"""

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.exc import DBAPIError

from shopfloor.db.check import add_missing_columns
from shopfloor.db.types import UtcDateTime, utcnow
from shopfloor.db.upsert import upsert
from shopfloor.mqtt.config import SPARKPLUG_NAMESPACE, SparkplugGroup
from shopfloor.mqtt.points import TagPoint, judged
from shopfloor.mqtt.sparkplug_b_pb2 import Payload
from shopfloor.tags.quality import (
    BAD,
    DEVICE_OFFLINE,
    NODE_OFFLINE,
    NULL_VALUE,
    UNSUPPORTED_TYPE,
)
from shopfloor.tags.registry import TagInfo

# Sparkplug B data type codes (the specification's table) and the names the registry
# keeps them under.
DATATYPES = {
    1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "uint8", 6: "uint16", 7: "uint32",
    8: "uint64", 9: "float", 10: "double", 11: "boolean", 12: "string", 13: "datetime",
    14: "text", 15: "uuid", 16: "dataset", 17: "bytes", 18: "file", 19: "template",
}
BOOLEAN, STRING = 11, 12
_SIGNED_32 = {1: 8, 2: 16, 3: 32}  # signed types carried in uint32 (two's complement)
_TEXT = {12, 14, 15}
_NUMERIC = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13}
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
# Protocol metrics of a node birth, not process values: not registered as tags.
_PROTOCOL_PREFIXES = ("Node Control/", "Properties/Hardware", "Properties/OS")


@dataclass
class Metric:
    """A metric as its birth described it."""

    name: str
    alias: int | None
    datatype: int


@dataclass
class Edge:
    """What the host knows of an edge node (``group/node``) or a device
    (``group/node/device``); ``seq`` and ``bdseq`` only for nodes."""

    online: bool = False
    bdseq: int | None = None
    seq: int | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)
    # Nodes only: the latest time (epoch ms) a message of the current session carried
    # (its payload's or metrics' timestamps, else its receive time). A will queued
    # while no collector was connected is dated from it (:meth:`SparkplugHost._death_ms`).
    last_heard: int | None = None

    def by_alias(self) -> dict[int, Metric]:
        return {m.alias: m for m in self.metrics.values() if m.alias is not None}


@dataclass
class Counters:
    """What the Sparkplug side saw in a run."""

    births: int = 0
    deaths: int = 0
    gaps: int = 0
    rebirths_requested: int = 0
    unresolved: int = 0  # metrics whose alias (or name) no birth gave


def state_tables(schema: str | None) -> tuple[Table, Table]:
    """``sparkplug_edge`` and ``sparkplug_metric`` in the warehouse's schema."""
    md = MetaData(schema=schema)
    edges = Table("sparkplug_edge", md,
                  Column("edge", String(255), primary_key=True),
                  Column("online", Boolean, nullable=False),
                  Column("bdseq", BigInteger),
                  Column("seq", Integer),
                  Column("updated_at", UtcDateTime, nullable=False),
                  # added later: nullable, and added to an existing table at the
                  # collector's start (SparkplugHost.create_tables)
                  Column("last_heard_ms", BigInteger))
    metrics = Table("sparkplug_metric", md,
                    Column("edge", String(255), primary_key=True),
                    Column("name", String(255), primary_key=True),
                    Column("alias", BigInteger),
                    Column("datatype", Integer, nullable=False))
    return edges, metrics


@dataclass(frozen=True)
class Topic:
    """``spBv1.0/<group>/<type>/<node>[/<device>]``."""

    group: str
    type: str
    node: str
    device: str | None

    @property
    def node_key(self) -> str:
        return f"{self.group}/{self.node}"

    @property
    def edge_key(self) -> str:
        return self.node_key if self.device is None else f"{self.node_key}/{self.device}"


def parse_topic(topic: str) -> Topic | None:
    """The parts of a Sparkplug B topic; None for another topic (or ``STATE``)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != SPARKPLUG_NAMESPACE:
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


def rebirth_request(now_ms: int | None = None) -> bytes:
    """The NCMD payload asking a node to publish its births again."""
    payload = Payload(timestamp=now_ms if now_ms is not None else int(time.time() * 1000))
    m = payload.metrics.add()
    m.name, m.datatype, m.boolean_value = REBIRTH_METRIC, BOOLEAN, True
    return payload.SerializeToString()


def metric_value(m: Payload.Metric, datatype: int) -> tuple[float | None, str | None,
                                                            str | None]:
    """(number, text, why bad) of a metric's value."""
    kind = m.WhichOneof("value")
    if m.is_null or kind is None:
        return None, None, NULL_VALUE
    if datatype in _TEXT:
        return None, str(getattr(m, kind)), None
    if datatype not in _NUMERIC or kind in ("bytes_value", "string_value"):
        return None, None, UNSUPPORTED_TYPE
    raw = getattr(m, kind)
    if datatype in _SIGNED_32 and kind == "int_value":
        bits = _SIGNED_32[datatype]
        raw = raw & ((1 << bits) - 1)
        raw = raw - (1 << bits) if raw >= 1 << (bits - 1) else raw
    elif datatype == 4 and kind == "long_value" and raw >= 1 << 63:
        raw -= 1 << 64
    return float(raw), None, None


def message_ms(payload: Payload, received_ms: int) -> int:
    """The latest time a message carries (its payload's or its metrics' timestamps),
    else its receive time."""
    stamps = [m.timestamp for m in payload.metrics if m.HasField("timestamp")]
    if payload.HasField("timestamp"):
        stamps.append(payload.timestamp)
    return max(stamps) if stamps else received_ms


def _is_protocol(name: str) -> bool:
    return name == BDSEQ_METRIC or name.startswith(_PROTOCOL_PREFIXES)


class SparkplugHost:
    """The host application's state and the rules of the protocol, one message at a
    time (in arrival order). Changes since :meth:`begin` are written by :meth:`save`
    in the caller's transaction, or undone by :meth:`rollback`."""

    def __init__(self, groups: Iterable[SparkplugGroup], schema: str | None = None):
        self.groups = {g.group: g for g in groups}
        self.edges: dict[str, Edge] = {}
        self.counters = Counters()
        self.edge_table, self.metric_table = state_tables(schema)
        self._undo: dict[str, Edge | None] = {}
        self._rebirth_asked: set[str] = set()
        self._asked_before: set[str] = set()
        self.rebirths: list[Topic] = []  # requests to publish once the batch is stored

    # -- persistence
    def create_tables(self, engine: Engine) -> list[str]:
        """Create the state tables where missing, and add the columns a table made by an
        earlier version lacks (nullable: its rows stay as they are); the DDL it ran.
        These tables are the collector's own (not ``shopfloor db init``'s), so this is
        their ``--upgrade``, run at every start."""
        try:
            return self._create_tables(engine)
        except DBAPIError:
            # Another collector (another client id, same warehouse) added the column
            # between our look and our ALTER: look again.
            return self._create_tables(engine)

    def _create_tables(self, engine: Engine) -> list[str]:
        with engine.begin() as conn:
            self.edge_table.create(conn, checkfirst=True)
            self.metric_table.create(conn, checkfirst=True)
            return add_missing_columns(conn, self.edge_table)

    def load(self, conn: Connection) -> None:
        """Read every edge's state (at start). A node saved before ``last_heard_ms``
        existed counts as last heard when its state was last saved (``updated_at``:
        after its last stored message)."""
        self.edges = {}
        for r in conn.execute(select(self.edge_table)):
            heard = r.last_heard_ms
            if heard is None and r.edge.count("/") == 1:  # a node's row (group/node)
                heard = int(r.updated_at.timestamp() * 1000)
            self.edges[r.edge] = Edge(r.online, r.bdseq, r.seq, last_heard=heard)
        for r in conn.execute(select(self.metric_table)):
            self.edges.setdefault(r.edge, Edge()).metrics[r.name] = Metric(
                r.name, r.alias, r.datatype)

    def begin(self) -> None:
        self._undo = {}
        self.rebirths = []
        self._asked_before = set(self._rebirth_asked)

    def _touch(self, key: str) -> Edge:
        """The edge ``key``, remembered as it was before this batch changed it."""
        if key not in self._undo:
            old = self.edges.get(key)
            self._undo[key] = copy.deepcopy(old)
        return self.edges.setdefault(key, Edge())

    def rollback(self, counters: Counters) -> None:
        for key, old in self._undo.items():
            if old is None:
                self.edges.pop(key, None)
            else:
                self.edges[key] = old
        self._undo = {}
        self.rebirths = []
        self._rebirth_asked = set(self._asked_before)  # asked again when decoded again
        self.counters = counters

    def save(self, conn: Connection) -> None:
        """Write the edges this batch changed."""
        if not self._undo:
            return
        now = utcnow()
        keys = sorted(self._undo)
        upsert(conn, self.edge_table, [
            {"edge": k, "online": self.edges[k].online, "bdseq": self.edges[k].bdseq,
             "seq": self.edges[k].seq, "last_heard_ms": self.edges[k].last_heard,
             "updated_at": now} for k in keys], ["edge"])
        conn.execute(delete(self.metric_table).where(self.metric_table.c.edge.in_(keys)))
        rows = [{"edge": k, "name": m.name, "alias": m.alias, "datatype": m.datatype}
                for k in keys for m in self.edges[k].metrics.values()]
        if rows:
            conn.execute(self.metric_table.insert(), rows)
        self._undo = {}

    # -- the protocol
    def tag_info(self, topic: Topic, edge_key: str, metric: Metric) -> TagInfo:
        group = self.groups.get(topic.group)
        return TagInfo(name=metric.name[:128], device=edge_key[:128],
                       location=group.location if group else None, unit=None,
                       data_type=DATATYPES.get(metric.datatype, f"type {metric.datatype}"),
                       description=None,
                       source_name=f"{SPARKPLUG_NAMESPACE}/{edge_key}:{metric.name}"[:255])

    def _ask_rebirth(self, topic: Topic) -> None:
        group = self.groups.get(topic.group)
        if group is None or not group.rebirth_on_gap or topic.node_key in self._rebirth_asked:
            return
        self._rebirth_asked.add(topic.node_key)
        self.rebirths.append(topic)
        self.counters.rebirths_requested += 1

    def _check_seq(self, topic: Topic, payload: Payload) -> None:
        """Follow the node's sequence: the next number (mod 256) is in order; the same
        or an older one is a redelivery (the broker resends what was not acknowledged
        before a restart); anything else is a gap: messages were lost, ask a rebirth."""
        node = self.edges.get(topic.node_key)
        if node is None or node.seq is None or not node.online:
            self._ask_rebirth(topic)
            return
        if not payload.HasField("seq"):
            return
        step = (payload.seq - node.seq) % 256
        if step == 1:
            self._touch(topic.node_key).seq = payload.seq
        elif step == 0 or step > 128:
            return  # a redelivery of a message already seen
        else:
            self.counters.gaps += 1
            self._touch(topic.node_key).seq = payload.seq
            self._ask_rebirth(topic)

    def message(self, topic: Topic, payload: Payload, received_ms: int,
                connected_ms: int | None = None) -> list[TagPoint]:
        """The points of one message (the host's state follows it). ``connected_ms``:
        when the connection the message came on was accepted (None: unknown, a death
        then keeps its receive time)."""
        kind = topic.type
        if kind == "NBIRTH":
            points = self._birth(topic, payload, received_ms, node=True)
            self.edges[topic.node_key].last_heard = message_ms(payload, received_ms)
            return points
        if kind == "NDEATH":
            return self._node_death(topic, payload, received_ms, connected_ms)
        if kind not in ("NDATA", "DDATA", "DBIRTH", "DDEATH"):
            return []  # NCMD, DCMD: commands to the nodes, no values
        self._check_seq(topic, payload)
        if kind == "DBIRTH":
            points = self._birth(topic, payload, received_ms, node=False)
        elif kind == "DDEATH":
            points = self._device_death(topic, payload, received_ms, connected_ms)
        else:
            points = self._data(topic, payload, received_ms)
        self._heard(topic, message_ms(payload, received_ms))
        return points

    def _heard(self, topic: Topic, ms: int) -> None:
        """The node's session sent a message of time ``ms``: its last-heard time moves
        forward (a redelivery of an older message leaves it)."""
        node = self.edges.get(topic.node_key)
        if node is not None and node.online and (node.last_heard is None
                                                 or ms > node.last_heard):
            self._touch(topic.node_key).last_heard = ms

    def _death_ms(self, node: Edge, received_ms: int, connected_ms: int | None) -> int:
        """When a death without a time of its own goes on record. A will that arrived
        while this connection has been up since before the node's last message (live)
        keeps its receive time. A node last heard before this connection may have died
        any time since, while no collector was connected (the broker queued its will and
        sends it now, maybe before a newer session's birth and data that carry their own,
        earlier, times): the death goes at the earliest it can have happened, 1 ms after
        the node was last heard, so it never lies after the node's later life. Never
        later than its receive time."""
        if connected_ms is None or node.last_heard is None \
                or node.last_heard >= connected_ms:
            return received_ms
        return min(node.last_heard + 1, received_ms)

    def _birth(self, topic: Topic, payload: Payload, received_ms: int,
               node: bool) -> list[TagPoint]:
        self.counters.births += 1
        key = topic.edge_key
        edge = self._touch(key)
        edge.online = True
        edge.metrics = {}
        if node:
            self._rebirth_asked.discard(topic.node_key)
            edge.seq = payload.seq if payload.HasField("seq") else 0
            bdseq = next((m for m in payload.metrics if m.name == BDSEQ_METRIC), None)
            edge.bdseq = None if bdseq is None else int(metric_value(bdseq, 8)[0] or 0)
        points = []
        for m in payload.metrics:
            if not m.name or _is_protocol(m.name):
                continue
            metric = Metric(m.name, m.alias if m.HasField("alias") else None,
                            m.datatype if m.HasField("datatype") else 0)
            edge.metrics[m.name] = metric
            points.append(self._point(topic, key, metric, m, payload, received_ms))
        return points

    def _point(self, topic: Topic, key: str, metric: Metric, m: Payload.Metric,
               payload: Payload, received_ms: int) -> TagPoint:
        info = self.tag_info(topic, key, metric)
        ms = m.timestamp if m.HasField("timestamp") else (
            payload.timestamp if payload.HasField("timestamp") else received_ms)
        datatype = m.datatype if m.HasField("datatype") else metric.datatype
        value, text, bad = metric_value(m, datatype)
        if bad is not None:
            return TagPoint(info, ms, quality=BAD, reason=bad)
        if text is not None:
            return TagPoint(info, ms, text=text)
        return judged(info, ms, value)

    def _data(self, topic: Topic, payload: Payload, received_ms: int) -> list[TagPoint]:
        key = topic.edge_key
        edge = self.edges.get(key)
        aliases = edge.by_alias() if edge else {}
        points = []
        for m in payload.metrics:
            metric = None
            if m.HasField("alias"):
                metric = aliases.get(m.alias)
            if metric is None and m.name and edge is not None:
                metric = edge.metrics.get(m.name)
            if metric is None:
                self.counters.unresolved += 1
                self._ask_rebirth(topic)
                continue
            points.append(self._point(topic, key, metric, m, payload, received_ms))
        return points

    def _dead_points(self, topic: Topic, keys: list[str], ms: int, reason: str
                     ) -> list[TagPoint]:
        points = []
        for key in keys:
            edge = self._touch(key)
            edge.online = False
            points += [TagPoint(self.tag_info(topic, key, m), ms, quality=BAD, reason=reason)
                       for m in edge.metrics.values()]
        return points

    def _node_death(self, topic: Topic, payload: Payload, received_ms: int,
                    connected_ms: int | None) -> list[TagPoint]:
        """Every tag of the node and of its devices bad from the node's death (an
        NDEATH is mostly the will the broker publishes for a node that dropped, and a
        will's timestamp is from when the node connected, so the time is the host's:
        :meth:`_death_ms`), once: a death whose ``bdSeq`` is not the current birth's (a
        stale will) or of a node already offline (a redelivery) writes nothing."""
        node = self.edges.get(topic.node_key)
        if node is None or not node.online:
            return []
        bdseq = next((m for m in payload.metrics if m.name == BDSEQ_METRIC), None)
        if bdseq is not None and node.bdseq is not None and \
                int(metric_value(bdseq, 8)[0] or 0) != node.bdseq:
            return []
        self.counters.deaths += 1
        # its devices still online (one that died before has its bad points already)
        keys = [topic.node_key] + sorted(k for k, e in self.edges.items()
                                         if k.startswith(topic.node_key + "/") and e.online)
        return self._dead_points(topic, keys, self._death_ms(node, received_ms, connected_ms),
                                 NODE_OFFLINE)

    def _device_death(self, topic: Topic, payload: Payload, received_ms: int,
                      connected_ms: int | None) -> list[TagPoint]:
        """The device's tags bad at the DDEATH's own timestamp: the live node publishes
        it when the device goes, so a DDEATH the broker queued keeps its place among the
        node's messages. Without a timestamp (the specification requires one), timed as
        a node's death (:meth:`_death_ms`)."""
        device = self.edges.get(topic.edge_key)
        if device is None or not device.online:
            return []
        self.counters.deaths += 1
        if payload.HasField("timestamp"):
            ms = payload.timestamp
        else:
            node = self.edges.get(topic.node_key)
            ms = received_ms if node is None else \
                self._death_ms(node, received_ms, connected_ms)
        return self._dead_points(topic, [topic.edge_key], ms, DEVICE_OFFLINE)
