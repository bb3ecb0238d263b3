"""Receive times that survive a redelivery: a QoS 1 message stored at the time the
collector received it (a JSON mapping without ``timestamp:``, or whose timestamp is
missing) lands on ``(tag_id, receive time)``. If the collector stops between the commit
and the PUBACK (a crash, a lost connection), the broker sends the message again, and a
new receive time would be a second row. So the time each such message was stored at is
kept, in the same transaction as its points, with the packet identifier the broker gave
it on the client's session; a redelivery (the DUP flag set: MQTT 5, 4.4, resent on the
session with the original packet identifier) of the same topic and payload takes that
time again, and its points overwrite themselves (docs/mqtt.md).

Only the last messages can come back: the broker has at most the collector's Receive
Maximum of messages unacknowledged at once, and the collector acknowledges in order. So
a batch's entries go into one row (one INSERT a batch, whatever its size), and rows
older than the last :data:`KEEP` entries are deleted in the same transaction.
"""


import hashlib

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)

from shopfloor.db.types import UtcDateTime, utcnow

TABLE = "mqtt_delivery"
KEEP = 2000
"""Entries kept per client id: twice the Receive Maximum the collector announces (1,000),
the most messages the broker can have sent and not had acknowledged."""

Entry = tuple[int, str, int]  # packet id, digest of topic and payload, receive ms


def delivery_table(schema: str | None) -> Table:
    """``mqtt_delivery`` in the warehouse's schema: per client id, one row per stored
    batch that had messages kept at their receive time."""
    return Table(TABLE, MetaData(schema=schema),
                 Column("client_id", String(255), primary_key=True),
                 # entries recorded for the client id up to this batch's last
                 Column("upto", BigInteger, primary_key=True, autoincrement=False),
                 Column("entries", Text, nullable=False),  # "pid digest ms" lines
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
        self.recorded = 0  # entries written for the client id so far (``upto``)

    def create_table(self, engine: Engine) -> None:
        with engine.begin() as conn:
            self.table.create(conn, checkfirst=True)

    def load(self, conn: Connection) -> None:
        """Read the session's last entries (at start: what the last collector stored)."""
        t = self.table
        self.known = {}
        rows = conn.execute(select(t.c.upto, t.c.entries)
                            .where(t.c.client_id == self.client_id).order_by(t.c.upto))
        for upto, entries in rows:
            self.recorded = upto
            for line in entries.splitlines():
                pid, d, ms = line.split(" ")
                self.known[int(pid)] = (d, int(ms))  # a later batch's entry wins

    def receive_time(self, topic: str, payload: bytes, packet_id: int, dup: bool,
                     received_ms: int) -> int:
        """The time the message was first stored at when this is a redelivery of it,
        else ``received_ms``."""
        if dup:
            known = self.known.get(packet_id)
            if known is not None and known[0] == digest(topic, payload):
                return known[1]
        return received_ms

    def record(self, topic: str, payload: bytes, packet_id: int, ms: int) -> Entry:
        """Remember that the message is stored at ``ms``; the entry to save with its
        points (:meth:`save`, in the batch's transaction)."""
        d = digest(topic, payload)
        self.known[packet_id] = (d, ms)
        return packet_id, d, ms

    def save(self, conn: Connection, entries: list[Entry]) -> None:
        """Write a batch's entries as one row and drop the rows no redelivery can need
        (every entry older than the last :data:`KEEP`)."""
        if not entries:
            return
        t = self.table
        upto = self.recorded + len(entries)  # a failed commit leaves a gap: harmless
        self.recorded = upto
        conn.execute(t.insert().values(
            client_id=self.client_id, upto=upto, updated_at=utcnow(),
            entries="\n".join(f"{pid} {d} {ms}" for pid, d, ms in entries)))
        conn.execute(delete(t).where(t.c.client_id == self.client_id,
                                     t.c.upto <= upto - KEEP))

    def kept(self, conn: Connection) -> int:
        """Entries in the table for the client id (a test's view)."""
        t = self.table
        rows = conn.execute(select(t.c.entries).where(t.c.client_id == self.client_id))
        return sum(len(e.splitlines()) for (e,) in rows)
