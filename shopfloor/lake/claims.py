"""Partition claims in ``pipeline_watermark``: two maintenance runs never merge the same
partition at once.

A claim is the row ``lake-merge:<sha1 of the partition key>`` whose ``value`` is the
claimer's token and ``updated_at`` the time it was taken or renewed. Taking it is an
INSERT (a second claimer's INSERT fails on the primary key) or, when the row exists, an
UPDATE that only matches a free claim, the claimer's own, or one not renewed for the TTL
(the claimer died). Portable Core statements, one short transaction each: PostgreSQL,
MySQL/MariaDB, SQL Server and SQLite all serialise the two on the row.
"""

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError

from shopfloor.db.engine import write_transaction
from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.errors import DataIntegrityError

FREE = "-"


class PartitionClaimLost(DataIntegrityError):
    """Another run took this partition's claim over: the merge publishes nothing."""


def claim_name(prefix: str, partition: str) -> str:
    """The claim row's name: fixed length, whatever the partition key's length."""
    digest = hashlib.sha1(f"{prefix}\n{partition}".encode()).hexdigest()  # noqa: S324 - a name, not security
    return f"lake-merge:{digest}"


def take(engine: Engine, tables: Tables, name: str, token: str, ttl: timedelta,
         now: datetime | None = None) -> bool:
    """Claim ``name`` for ``token``; ``False`` if a live claim of another run holds it."""
    t = tables.pipeline_watermark
    now = now or utcnow()
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(t).values(name=name, value=token, updated_at=now))
        return True
    except IntegrityError:
        pass
    with write_transaction(engine) as conn:
        return conn.execute(
            update(t).where(t.c.name == name,
                            or_(t.c.value == token, t.c.value == FREE,
                                t.c.updated_at < now - ttl))
            .values(value=token, updated_at=now)).rowcount == 1


def renew(engine: Engine, tables: Tables, name: str, token: str,
          now: datetime | None = None) -> None:
    """Check that ``token`` still holds ``name`` and renew it (the fence before a commit);
    raise :class:`PartitionClaimLost` if not."""
    t = tables.pipeline_watermark
    with write_transaction(engine) as conn:
        held = conn.execute(update(t).where(and_(t.c.name == name, t.c.value == token))
                            .values(updated_at=now or utcnow())).rowcount
    if held != 1:
        raise PartitionClaimLost(f"partition claim {name} was taken over; nothing published")


def release(engine: Engine, tables: Tables, name: str, token: str) -> None:
    """Give the claim back (only if still ours)."""
    t = tables.pipeline_watermark
    with write_transaction(engine) as conn:
        conn.execute(delete(t).where(t.c.name == name, t.c.value == token))
