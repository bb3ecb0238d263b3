"""Receive times that survive a redelivery: a QoS 1 message stored at the time the
collector received it (a JSON mapping without ``timestamp:``, or whose timestamp is
missing) lands on ``(tag_id, receive time)``. If the collector stops between the commit
and the PUBACK (a crash, a lost connection), the broker sends the message again, and a
new receive time would be a second row. So the time each such message was stored at is
kept, in the same transaction as its points, under the packet identifier the broker
gave it on the client's session; a redelivery (the DUP flag set: MQTT 5, 4.4, resent
on the session with the original packet identifier) of the same topic and payload takes
that time again, and its points overwrite themselves (docs/mqtt.md).

One row per client id and packet identifier (at most 65,535 per session): a packet
identifier's next message replaces its row.
"""

import hashlib
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    select,
)

from shopfloor.db.types import UtcDateTime, utcnow
from shopfloor.db.upsert import upsert

TABLE = "mqtt_delivery"


def delivery_table(schema: str | None) -> Table:
    """``mqtt_delivery`` in the warehouse's schema."""
    return Table(TABLE, MetaData(schema=schema),
                 Column("client_id", String(255), primary_key=True),
                 Column("packet_id", Integer, primary_key=True),
                 Column("digest", String(32), nullable=False),  # of topic and payload
                 Column("received_ms", BigInteger, nullable=False),
                 Column("updated_at", UtcDateTime, nullable=False))


def digest(topic: str, payload: bytes) -> str:
    """What tells a redelivery from another message under a reused packet identifier."""
    h = hashlib.blake2b(topic.encode(), digest_size=16)
    h.update(b"\0")
    h.update(payload)
    return h.hexdigest()


class Deliveries:
    """The receive times stored per packet identifier of one client id's session."""

    def __init__(self, client_id: str, schema: str | None = None):
        self.client_id = client_id
        self.table = delivery_table(schema)
        self.known: dict[int, tuple[str, int]] = {}  # packet id -> (digest, receive ms)

    def create_table(self, engine: Engine) -> None:
        with engine.begin() as conn:
            self.table.create(conn, checkfirst=True)

    def load(self, conn: Connection) -> None:
        """Read the session's rows (at start: what the last collector stored)."""
        t = self.table
        self.known = {r.packet_id: (r.digest, r.received_ms) for r in conn.execute(
            select(t.c.packet_id, t.c.digest, t.c.received_ms)
            .where(t.c.client_id == self.client_id))}

    def receive_time(self, topic: str, payload: bytes, packet_id: int, dup: bool,
                     received_ms: int) -> int:
        """The time the message was first stored at when this is a redelivery of it,
        else ``received_ms``."""
        if dup:
            known = self.known.get(packet_id)
            if known is not None and known[0] == digest(topic, payload):
                return known[1]
        return received_ms

    def record(self, topic: str, payload: bytes, packet_id: int, ms: int) -> dict[str, Any]:
        """Remember that the message is stored at ``ms``; the row to save with its
        points (:meth:`save`, in the batch's transaction)."""
        d = digest(topic, payload)
        self.known[packet_id] = (d, ms)
        return {"client_id": self.client_id, "packet_id": packet_id, "digest": d,
                "received_ms": ms}

    def save(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Write a batch's rows (a packet identifier twice in one batch: its last)."""
        if not rows:
            return
        now = utcnow()
        last = {r["packet_id"]: r for r in rows}
        upsert(conn, self.table, [r | {"updated_at": now} for r in last.values()],
               ["client_id", "packet_id"])
