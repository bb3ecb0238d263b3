"""A Sparkplug B edge node for the tests: births with aliases, data by alias, sequence
numbers, a will (NDEATH), device deaths, and the rebirth requests it receives. It
records every value it publishes, so a test can look for each one in the warehouse."""

import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from shopfloor.mqtt.sparkplug_b_pb2 import Payload
from tests.integration.mqtt.conftest import BROKER, unique, wait_for

DOUBLE, BOOLEAN, INT32, STRING, FLOAT, INT64, UINT64 = 10, 11, 3, 12, 9, 4, 8


@dataclass(frozen=True)
class MetricDef:
    name: str
    alias: int
    datatype: int


NODE_METRICS = [MetricDef("Temperature", 1, DOUBLE), MetricDef("Running", 2, BOOLEAN),
                MetricDef("Count", 3, INT32), MetricDef("Mode", 4, STRING)]
DEVICE_METRICS = [MetricDef("Pressure", 10, FLOAT), MetricDef("Speed", 11, INT64)]


def value_of(m: MetricDef, i: int) -> float | str:
    """The value metric ``m`` has in its ``i``-th message (exact in its type)."""
    return {DOUBLE: i * 0.5, BOOLEAN: float(i % 2), INT32: float(-i), STRING: f"mode-{i}",
            FLOAT: i * 0.25, INT64: float(-(10**12) - i)}[m.datatype]


def _set(metric: Payload.Metric, m: MetricDef, value: float | str) -> None:
    if m.datatype == DOUBLE:
        metric.double_value = float(value)
    elif m.datatype == FLOAT:
        metric.float_value = float(value)
    elif m.datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    elif m.datatype == INT32:
        metric.int_value = int(value) & 0xFFFFFFFF
    elif m.datatype == INT64:
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    else:
        metric.string_value = str(value)


class EdgeNode:
    """``spBv1.0/<group>/.../<node>`` with one device ``<node>``'s ``device``."""

    def __init__(self, group: str, node: str, device: str = "D1", bdseq: int = 0):
        self.group, self.node, self.device, self.bdseq = group, node, device, bdseq
        self.seq = 0
        self.published: dict[tuple[str, str, int], float | str] = {}
        self.rebirth_requests = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("edge"),
                                  protocol=mqtt.MQTTv5)
        self.client.will_set(self.topic("NDEATH"), self._death(), qos=1)
        self.client.on_message = self._on_message
        subscribed: list[bool] = []
        self.client.on_subscribe = lambda *_a: subscribed.append(True)
        self.client.connect(*BROKER)
        self.client.loop_start()
        self.client.subscribe(self.topic("NCMD"), qos=1)
        wait_for(lambda: subscribed, "the edge node's NCMD subscription")

    @property
    def node_key(self) -> str:
        return f"{self.group}/{self.node}"

    @property
    def device_key(self) -> str:
        return f"{self.node_key}/{self.device}"

    def topic(self, kind: str, device: bool = False) -> str:
        tail = f"/{self.device}" if device else ""
        return f"spBv1.0/{self.group}/{kind}/{self.node}{tail}"

    def _death(self) -> bytes:
        p = Payload()
        m = p.metrics.add()
        m.name, m.datatype, m.long_value = "bdSeq", UINT64, self.bdseq
        return p.SerializeToString()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        p = Payload.FromString(msg.payload)
        if any(m.name == "Node Control/Rebirth" and m.boolean_value for m in p.metrics):
            with self._lock:
                self.rebirth_requests += 1

    def _next_seq(self, skip: int = 0) -> int:
        self.seq = (self.seq + 1 + skip) % 256
        return self.seq

    def _send(self, topic: str, p: Payload) -> None:
        self.client.publish(topic, p.SerializeToString(), qos=1).wait_for_publish(10)

    def _metrics(self, p: Payload, defs: list[MetricDef], key: str, i: int, ts: int,
                 birth: bool) -> None:
        for d in defs:
            m = p.metrics.add()
            if birth:
                m.name, m.datatype = d.name, d.datatype
            m.alias, m.timestamp = d.alias, ts
            value = value_of(d, i)
            _set(m, d, value)
            self.published[(key, d.name, ts)] = value

    def births(self, i: int, ts: int) -> None:
        """NBIRTH (seq 0, bdSeq) and DBIRTH, every metric with its value ``i``."""
        p = Payload(timestamp=ts, seq=0)
        self.seq = 0
        bd = p.metrics.add()
        bd.name, bd.datatype, bd.long_value = "bdSeq", UINT64, self.bdseq
        rebirth = p.metrics.add()
        rebirth.name, rebirth.datatype, rebirth.boolean_value = \
            "Node Control/Rebirth", BOOLEAN, False
        self._metrics(p, NODE_METRICS, self.node_key, i, ts, birth=True)
        self._send(self.topic("NBIRTH"), p)
        p = Payload(timestamp=ts, seq=self._next_seq())
        self._metrics(p, DEVICE_METRICS, self.device_key, i, ts, birth=True)
        self._send(self.topic("DBIRTH", device=True), p)

    def node_data(self, i: int, ts: int, skip: int = 0) -> None:
        p = Payload(timestamp=ts, seq=self._next_seq(skip))
        self._metrics(p, NODE_METRICS, self.node_key, i, ts, birth=False)
        self._send(self.topic("NDATA"), p)

    def device_data(self, i: int, ts: int, skip: int = 0) -> None:
        p = Payload(timestamp=ts, seq=self._next_seq(skip))
        self._metrics(p, DEVICE_METRICS, self.device_key, i, ts, birth=False)
        self._send(self.topic("DDATA", device=True), p)

    def device_death(self, ts: int) -> None:
        self._send(self.topic("DDEATH", device=True), Payload(timestamp=ts,
                                                              seq=self._next_seq()))

    def drop(self) -> None:
        """Lose the connection without DISCONNECT: the broker publishes the NDEATH will."""
        self.client.loop_stop()
        self.client.socket().close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
