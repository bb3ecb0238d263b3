"""Which tables hold a window: Ignition's ``sqlth_partitions`` when it exists, else the
name pattern.

Ignition records every data table it creates in ``sqlth_partitions``: the table name
(``pname``), the driver that writes it (``drvid``) and the span of time it holds
(``start_time`` inclusive, ``end_time`` exclusive, epoch ms). Spans are whatever the
gateway was configured with (a month by default, a week or a day on busy systems, and a
change of setting leaves a mix), and every driver has its own tables. A tag belongs to a
driver through its scan class: ``sqlth_te.scid -> sqlth_scinfo.id -> sqlth_scinfo.drvid``.

:func:`plan_reads` (pure) turns the partitions into the reads of each month slice;
:func:`load_partitions` reads them, checking every table name before it is used.
"""

from dataclasses import dataclass, replace

from sqlalchemy import Connection, inspect, select

from shopfloor.db.schema import Tables, historian_catalog
from shopfloor.errors import ShopfloorError
from shopfloor.historian.plan import MonthSlice, TableRead
from shopfloor.identifiers import check_identifier


@dataclass(frozen=True)
class Partition:
    """One row of ``sqlth_partitions``: ``table`` holds ``drvid``'s rows in
    ``[start_ms, end_ms)``."""

    table: str
    drvid: int | None
    start_ms: int
    end_ms: int


def plan_reads(slices: list[MonthSlice], partitions: list[Partition]) -> list[MonthSlice]:
    """Each slice with the reads of the partitions that overlap it, clipped to it.

    A table listed more than once (for several drivers, or in overlapping rows) is read
    once per driver over the hull of its spans, so no row is read twice. A slice no
    partition overlaps gets no reads and keeps its pattern table name; the caller
    reports it missing. ``table`` of a slice with reads names its tables, for reports.
    """
    out = []
    for s in slices:
        spans: dict[tuple[str, int | None], tuple[int, int]] = {}
        for p in partitions:
            lo, hi = max(p.start_ms, s.start_ms), min(p.end_ms, s.end_ms)
            if lo >= hi:
                continue
            key = (p.table, p.drvid)
            old = spans.get(key)
            spans[key] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
        reads = tuple(TableRead(t, lo, hi, d) for (t, d), (lo, hi) in
                      sorted(spans.items(), key=lambda kv: (kv[1][0], kv[0][0], kv[0][1] or 0)))
        if reads:
            names = ",".join(dict.fromkeys(r.table for r in reads))
            out.append(replace(s, table=names, reads=reads))
        else:
            out.append(s)
    return out


def has_catalog(conn: Connection, tables: Tables) -> bool:
    """True when the historian has ``sqlth_partitions`` with at least one row.

    An empty catalog (a fresh gateway, or a historian that never partitioned) falls back
    to the name pattern like a missing one.
    """
    catalog = historian_catalog(tables.schema)
    if not inspect(conn).has_table(catalog.partitions.name, schema=tables.schema):
        return False
    return conn.execute(select(catalog.partitions.c.pname).limit(1)).first() is not None


def has_drivers(conn: Connection, tables: Tables) -> bool:
    """True when tags can be tied to drivers: ``sqlth_te.scid`` and ``sqlth_scinfo`` exist."""
    insp = inspect(conn)
    catalog = historian_catalog(tables.schema)
    if not insp.has_table(catalog.scinfo.name, schema=tables.schema):
        return False
    columns = {c["name"].lower()
               for c in insp.get_columns(tables.sqlth_te.name, schema=tables.schema)}
    return "scid" in columns


def load_partitions(conn: Connection, tables: Tables, start_ms: int,
                    end_ms: int) -> list[Partition]:
    """The partitions that overlap ``[start_ms, end_ms)``; every name is checked as a
    strict identifier (a name from the database is still input)."""
    p = historian_catalog(tables.schema).partitions
    stmt = (select(p.c.pname, p.c.drvid, p.c.start_time, p.c.end_time)
            .where(p.c.start_time < end_ms, p.c.end_time > start_ms)
            .order_by(p.c.start_time, p.c.pname))
    out = []
    for r in conn.execute(stmt):
        name = check_identifier(str(r.pname).strip(), "historian table in sqlth_partitions")
        if r.start_time is None or r.end_time is None:
            raise ShopfloorError(f"sqlth_partitions row {name!r} has no start or end time")
        out.append(Partition(name, None if r.drvid is None else int(r.drvid),
                             int(r.start_time), int(r.end_time)))
    return out


def discover(conn: Connection, tables: Tables, slices: list[MonthSlice]
             ) -> tuple[list[MonthSlice], list[MonthSlice]]:
    """``(planned, uncovered)``: with ``sqlth_partitions``, the slices with their reads and
    those no partition overlaps; without it, the slices as the name pattern planned them."""
    if not slices or not has_catalog(conn, tables):
        return slices, []
    parts = load_partitions(conn, tables, slices[0].start_ms, slices[-1].end_ms)
    planned = plan_reads(slices, parts)
    return [s for s in planned if s.reads], [s for s in planned if not s.reads]
