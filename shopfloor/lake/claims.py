"""Partition claims in ``pipeline_watermark``: two maintenance runs never merge the same
partition at once.

A claim is the row ``lake-merge:<sha1 of the partition key>`` whose ``value`` is the
claimer's holder string and ``updated_at`` the time it was taken or renewed. The holder is
the merge attempt's token followed by its flow run's id (32 + 32 hex digits, the column's
64), so that a later run can ask Prefect whether the claimer has ended
(:func:`holder_run`); outside a flow run it is the token alone. Taking it is an
INSERT (a second claimer's INSERT fails on the primary key) or, when the row exists, an
UPDATE that only matches a free claim, the claimer's own, or one not renewed for the TTL
(the claimer died), or one whose holder is among ``ended`` (its run is known to be over:
no TTL to wait). Portable Core statements, one short transaction each: PostgreSQL,
MySQL/MariaDB, SQL Server and SQLite all serialise the two on the row.
"""

import hashlib
import re
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from shopfloor.db.engine import write_transaction
from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.errors import DataIntegrityError

FREE = "-"
PREFIX = "lake-merge:"
_HOLDER = re.compile(r"[0-9a-f]{32}([0-9a-f]{32})")


class PartitionClaimLost(DataIntegrityError):
    """Another run took this partition's claim over: the merge publishes nothing."""


def claim_name(prefix: str, partition: str) -> str:
    """The claim row's name: fixed length, whatever the partition key's length."""
    digest = hashlib.sha1(f"{prefix}\n{partition}".encode()).hexdigest()  # noqa: S324 - a name, not security
    return f"{PREFIX}{digest}"


def holder(token: str, run_id: str) -> str:
    """The claim value of merge attempt ``token`` of flow run ``run_id``: the token, then
    the run's id as 32 hex digits; the token alone when ``run_id`` is no run's id."""
    try:
        return token + uuid.UUID(run_id).hex
    except ValueError:
        return token


def holder_run(value: str) -> str | None:
    """The flow run id in a claim value, ``None`` if it holds none (an older claim, a
    plain call's)."""
    found = _HOLDER.fullmatch(value)
    return str(uuid.UUID(found.group(1))) if found else None


def held(engine: Engine, tables: Tables) -> list[str]:
    """The holder values of every partition claim held now (live or stale)."""
    t = tables.pipeline_watermark
    with engine.connect() as conn:
        return list(conn.execute(select(t.c.value).where(
            t.c.name.startswith(PREFIX, autoescape=True), t.c.value != FREE)).scalars())


def runs_holding(engine: Engine, tables: Tables) -> dict[str, list[str]]:
    """The flow runs named in held partition claims, each with its claims' values (what
    :func:`take` gets as ``ended`` once the orchestrator says the run is over)."""
    runs: dict[str, list[str]] = {}
    for value in held(engine, tables):
        run = holder_run(value)
        if run:
            runs.setdefault(run, []).append(value)
    return runs


def take(engine: Engine, tables: Tables, name: str, token: str, ttl: timedelta,
         now: datetime | None = None, ended: Collection[str] = ()) -> bool:
    """Claim ``name`` for ``token``; ``False`` if a live claim of another run holds it.
    A claim whose holder is in ``ended`` (runs known to be over) is taken at once."""
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
                                t.c.updated_at < now - ttl,
                                *([t.c.value.in_(sorted(ended))] if ended else [])))
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
