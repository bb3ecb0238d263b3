"""Claiming keys atomically per dialect, and recording how each claimed key ended.

A claim sets ``compression_status='CLAIMED'`` and ``compression_run_id`` to the claimer's
run id. Concurrent claimers get disjoint keys: PostgreSQL and MySQL/MariaDB skip rows
another transaction has locked (``FOR UPDATE SKIP LOCKED``), SQL Server reads past them
(``UPDLOCK, READPAST``), SQLite serialises claimers on its write lock (``BEGIN IMMEDIATE``).
A claim older than the TTL is taken over; the previous run id is returned so the new
claimer can remove the stale claim's partial output before writing its own. So is, at
once, a claim of a run known to have *ended* (the caller asks the orchestrator which of
:func:`claiming_runs` are over: a run that failed while the database was away
could not give its keys back, and they would otherwise wait out the TTL). A run wrongly
believed ended is still safe: its fence finds the claim taken and it publishes nothing.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import TextClause

from shopfloor.db.engine import write_transaction
from shopfloor.db.schema import Tables
from shopfloor.db.types import UtcDateTime, utcnow
from shopfloor.errors import DataIntegrityError

MAX_ATTEMPTS = 5  # a key that failed this often is parked as FAILED, not retried forever


@dataclass(frozen=True)
class ClaimedKey:
    """One claimed object; ``previous_run_id`` is the stale claim it was taken from, if any."""

    id: int
    key: str
    size: int | None
    previous_run_id: str | None


def _claimable(tables: Tables, district: str, cutoff: datetime, run_id: str,
               ended: Sequence[str] = ()):
    t = tables.s3_object
    # A run's own claims are claimable again, so a retried claim returns them too; so are
    # the claims of runs that ended.
    return and_(
        t.c.distrik == district,
        or_(
            t.c.compression_status == "PENDING",
            and_(t.c.compression_status == "CLAIMED",
                 or_(t.c.claimed_at < cutoff,
                     t.c.compression_run_id.in_(_owners(run_id, ended)))),
        ),
    )


def _owners(run_id: str, ended: Sequence[str]) -> list[str]:
    """The run ids whose claims a claimer takes whatever their age: its own and those of
    ended runs (never empty, so an ``IN`` list is valid SQL on every dialect)."""
    return [run_id, *sorted(set(ended) - {run_id})]


def build_mssql_claim(tables: Tables, dialect: Dialect) -> TextClause:
    """SQL Server's claim: one ``UPDATE`` of the ``TOP (n)`` unlocked rows with ``OUTPUT``.

    ``READPAST`` skips rows other claimers hold, ``UPDLOCK`` keeps the chosen rows from
    being claimed twice, and ``OUTPUT deleted.compression_run_id`` returns the stale claim.
    """
    q = dialect.identifier_preparer
    t = q.format_table(tables.s3_object)
    key = q.quote("key")
    # Identifiers come from the table metadata, quoted by the dialect; values are bound.
    sql = f"""WITH c AS (
    SELECT TOP (:limit) id, {key}, size, compression_run_id, compression_status,
           claimed_at, attempts
    FROM {t} WITH (UPDLOCK, READPAST, ROWLOCK)
    WHERE distrik = :district
      AND (compression_status = 'PENDING'
           OR (compression_status = 'CLAIMED'
               AND (claimed_at < :cutoff OR compression_run_id IN :owners)))
    ORDER BY id
)
UPDATE c SET compression_status = 'CLAIMED', compression_run_id = :run_id,
    claimed_at = :now, attempts = attempts + 1
OUTPUT inserted.id, inserted.{key}, inserted.size, deleted.compression_run_id;"""  # noqa: S608
    return text(sql).bindparams(
        bindparam("cutoff", type_=UtcDateTime()), bindparam("now", type_=UtcDateTime()),
        bindparam("owners", expanding=True),
    )


def build_claim_select(tables: Tables, district: str, limit: int, run_id: str,
                       cutoff: datetime, dialect_name: str, ended: Sequence[str] = ()
                       ) -> Select:
    """The rows to claim; on PostgreSQL and MySQL/MariaDB locked rows are skipped."""
    t = tables.s3_object
    stmt = (
        select(t.c.id, t.c.key, t.c.size, t.c.compression_run_id)
        .where(_claimable(tables, district, cutoff, run_id, ended))
        .order_by(t.c.id)
        .limit(limit)
    )
    if dialect_name in ("postgresql", "mysql", "mariadb"):
        stmt = stmt.with_for_update(skip_locked=True)
    return stmt


def _claim_with_select(conn: Connection, tables: Tables, district: str, limit: int,
                       run_id: str, cutoff: datetime, now: datetime,
                       ended: Sequence[str]) -> list[ClaimedKey]:
    t = tables.s3_object
    stmt = build_claim_select(tables, district, limit, run_id, cutoff, conn.dialect.name,
                              ended)
    rows = conn.execute(stmt).all()
    if not rows:
        return []
    conn.execute(
        update(t)
        .where(t.c.id.in_([r.id for r in rows]))
        .values(compression_status="CLAIMED", compression_run_id=run_id, claimed_at=now,
                attempts=t.c.attempts + 1)
    )
    return [ClaimedKey(r.id, r.key, r.size, r.compression_run_id) for r in rows]


def claim_keys(engine: Engine, tables: Tables, district: str, limit: int, run_id: str,
               claim_ttl: timedelta, now: datetime | None = None,
               ended: Sequence[str] = ()) -> list[ClaimedKey]:
    """Claim up to ``limit`` PENDING (or stale CLAIMED) keys of ``district`` for ``run_id``;
    the keys claimed by the runs of ``ended`` are taken whatever their age.

    Runs in its own short write transaction, committed before it returns: on SQLite it
    holds the write lock before reading, so two claimers cannot read the same rows.
    """
    now = now or utcnow()
    cutoff = now - claim_ttl
    # InnoDB's REPEATABLE READ adds gap locks that make claimers wait on each other's
    # index ranges; READ COMMITTED locks only the rows claimed.
    options = ({"isolation_level": "READ COMMITTED"}
               if engine.dialect.name in ("mysql", "mariadb") else {})
    with write_transaction(engine, **options) as conn:
        if conn.dialect.name == "mssql":
            rows = conn.execute(build_mssql_claim(tables, conn.dialect), {
                "limit": limit, "district": district, "cutoff": cutoff, "run_id": run_id,
                "owners": _owners(run_id, ended), "now": now}).all()
            claimed = [ClaimedKey(r[0], r[1], r[2], r[3]) for r in rows]
        else:
            claimed = _claim_with_select(conn, tables, district, limit, run_id, cutoff, now,
                                         ended)
    return sorted(claimed, key=lambda c: c.id)


FINISH_CHUNK = 1000


def finish_claim(conn: Connection, tables: Tables, run_id: str, succeeded: Sequence[str],
                 quarantined: Mapping[str, str], now: datetime | None = None) -> int:
    """Mark ``succeeded`` keys SUCCESS and ``quarantined`` keys QUARANTINED (with reason).

    Only rows still claimed by ``run_id`` change: if a slower run's claim was taken
    over, its late update is a no-op. Returns the number of rows updated.
    """
    t = tables.s3_object
    now = now or utcnow()
    mine = and_(t.c.compression_run_id == run_id, t.c.compression_status == "CLAIMED")
    changed = 0
    keys = list(succeeded)
    # In chunks: SQL Server takes at most 2,100 bound parameters a statement, SQLite
    # 32,766, and a run may hold up to 100,000 keys.
    for i in range(0, len(keys), FINISH_CHUNK):
        changed += conn.execute(
            update(t).where(mine, t.c.key.in_(keys[i:i + FINISH_CHUNK]))
            .values(compression_status="SUCCESS", completed_at=now, error=None)
        ).rowcount
    for key, reason in quarantined.items():
        changed += conn.execute(
            update(t).where(mine, t.c.key == key)
            .values(compression_status="QUARANTINED", completed_at=now, error=reason[:2000])
        ).rowcount
    return changed


def release_claim(conn: Connection, tables: Tables, run_id: str, error: str) -> int:
    """Give this run's unfinished keys back (PENDING, or FAILED after too many attempts).

    ``compression_run_id`` is kept so the next claimer still cleans this run's output.
    """
    t = tables.s3_object
    return conn.execute(
        update(t)
        .where(t.c.compression_run_id == run_id, t.c.compression_status == "CLAIMED")
        .values(
            compression_status=case((t.c.attempts >= MAX_ATTEMPTS, "FAILED"), else_="PENDING"),
            error=error[:2000],
        )
    ).rowcount


def claimable_districts(conn: Connection, tables: Tables, cutoff: datetime,
                        ended: Sequence[str] = ()) -> list[str]:
    """Districts with keys a run may claim (PENDING, or CLAIMED before ``cutoff`` or by a
    run of ``ended``), the one whose oldest such key was registered first coming first.

    Serving the oldest backlog first means no district starves behind a busy one: its
    oldest key becomes the oldest of all in time.
    """
    t = tables.s3_object
    stale = t.c.claimed_at < cutoff
    if ended:
        stale = or_(stale, t.c.compression_run_id.in_(sorted(set(ended))))
    waiting = or_(t.c.compression_status == "PENDING",
                  and_(t.c.compression_status == "CLAIMED", stale))
    rows = conn.execute(
        select(t.c.distrik, func.min(t.c.id).label("first"))
        .where(waiting).group_by(t.c.distrik).order_by(func.min(t.c.id))
    ).all()
    return [r.distrik for r in rows]


def claiming_runs(conn: Connection, tables: Tables, older_than: datetime) -> list[str]:
    """The runs holding CLAIMED keys claimed before ``older_than`` (a run's first moments
    are left alone: it may not be known to the orchestrator yet)."""
    t = tables.s3_object
    rows = conn.execute(select(t.c.compression_run_id).distinct().where(
        t.c.compression_status == "CLAIMED", t.c.compression_run_id.is_not(None),
        t.c.claimed_at < older_than))
    return sorted(r for (r,) in rows)


def renew_claim(conn: Connection, tables: Tables, run_id: str, now: datetime | None = None,
                district: str | None = None) -> int:
    """Refresh ``claimed_at`` of the keys ``run_id`` still holds (of ``district``, if given);
    returns how many it holds. A run that keeps renewing is never taken over."""
    t = tables.s3_object
    mine = and_(t.c.compression_run_id == run_id, t.c.compression_status == "CLAIMED")
    if district is not None:
        mine = and_(mine, t.c.distrik == district)
    return conn.execute(update(t).where(mine).values(claimed_at=now or utcnow())).rowcount


def claim_holders(conn: Connection, tables: Tables, ids: Sequence[int], run_id: str
                  ) -> list[str]:
    """The runs other than ``run_id`` that now hold (or finished) keys of ``ids``."""
    t = tables.s3_object
    holders: set[str] = set()
    for i in range(0, len(ids), 500):  # far below every dialect's parameter limit
        holders.update(conn.execute(
            select(t.c.compression_run_id).distinct()
            .where(t.c.id.in_(list(ids[i:i + 500])), t.c.compression_run_id != run_id)
        ).scalars())
    return sorted(h for h in holders if h)


class ClaimLost(DataIntegrityError):
    """This run no longer holds every key it claimed: another run took the claim over."""


def fence(engine: Engine, tables: Tables, run_id: str, district: str,
          claimed: Sequence[ClaimedKey], now: datetime | None = None) -> None:
    """Check, immediately before publishing, that ``run_id`` still holds every key it
    claimed in ``district``, renewing them in the same statement; raise :class:`ClaimLost`
    naming the run(s) that took them over if not.

    The renewal gives the publish a full TTL: nobody can take the claim over while the
    files are moved, unless the TTL is shorter than the moves take.
    """
    with write_transaction(engine) as conn:
        held = renew_claim(conn, tables, run_id, now, district)
        if held >= len(claimed):
            return
        holders = claim_holders(conn, tables, [c.id for c in claimed], run_id)
    by = ", ".join(holders) if holders else "an operator (keys reset)"
    raise ClaimLost(
        f"claim taken over by run {by}: {len(claimed) - held} of {len(claimed)} keys of "
        f"{district} are no longer held by run {run_id}; nothing was published")


LIVE, FINISHED, DEAD = "live", "finished", "dead"
"""What became of a claim that left a manifest or staging behind (see :func:`holdings`)."""


def holdings(conn: Connection, tables: Tables, claims: Sequence[tuple[str, str]],
             cutoff: datetime, ended: Sequence[str] = ()) -> dict[tuple[str, str], str]:
    """For each ``(run_id, district)``: ``finished`` when the run recorded the outcome of
    keys of that district (SUCCESS or QUARANTINED under its id: its files are final),
    else ``live`` when it still holds a claim renewed at or after ``cutoff`` and is not
    one of the ``ended`` runs, else ``dead`` (crashed, released or taken over: its
    output must go). An empty district
    means any district (claims written before runs were scoped by district)."""
    t = tables.s3_object
    runs = sorted({run for run, _ in claims})
    over = set(ended)
    seen: dict[tuple[str, str], set[str]] = {}
    for i in range(0, len(runs), 500):  # far below every dialect's parameter limit
        rows = conn.execute(
            select(t.c.compression_run_id, t.c.distrik, t.c.compression_status,
                   func.max(t.c.claimed_at))
            .where(t.c.compression_run_id.in_(runs[i:i + 500]))
            .group_by(t.c.compression_run_id, t.c.distrik, t.c.compression_status)
        ).all()
        for run, district, status, claimed_at in rows:
            live = status == "CLAIMED" and claimed_at is not None and \
                claimed_at >= cutoff and run not in over
            mark = FINISHED if status in ("SUCCESS", "QUARANTINED") else LIVE if live else ""
            if mark:
                seen.setdefault((run, district), set()).add(mark)
                seen.setdefault((run, ""), set()).add(mark)
    out = {}
    for claim in claims:
        marks = seen.get(claim, set())
        out[claim] = FINISHED if FINISHED in marks else LIVE if LIVE in marks else DEAD
    return out
