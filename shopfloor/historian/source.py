"""What the source database holds for a month slice: do its tables exist, how many rows.

The counts use the same filters as the extraction (the LIKE patterns through a join on
``sqlth_te``, the quality codes, each read's time range and driver), independently of
Spark, so a count that matches the staged files is a real check.
"""

from collections import defaultdict

from sqlalchemy import Connection, Integer, Select, column, func, inspect, or_, select, table

from shopfloor.db.schema import Tables, historian_catalog, historian_data_table
from shopfloor.historian.plan import MonthSlice, TableRead
from shopfloor.historian.tags import tag_filter

DAY_MS = 86_400_000


def table_exists(conn: Connection, tables: Tables, name: str) -> bool:
    return inspect(conn).has_table(name, schema=tables.schema)


def split_existing(conn: Connection, tables: Tables,
                   slices: list[MonthSlice]) -> tuple[list[MonthSlice], list[MonthSlice]]:
    """``(present, missing)``: slices whose tables all exist, and the others (a slice
    missing one of its tables is not extracted: its old output stays as it was)."""
    present, missing = [], []
    for s in slices:
        ok = all(table_exists(conn, tables, r.table) for r in s.table_reads)
        (present if ok else missing).append(s)
    return present, missing


def _read_filter(tables: Tables, read: TableRead, data, patterns: list[str],
                 good_quality: list[int], drivers: bool) -> list:
    te = tables.sqlth_te
    where = [data.c.t_stamp >= read.start_ms, data.c.t_stamp < read.end_ms,
             data.c.dataintegrity.in_(good_quality), tag_filter(tables, patterns)]
    if drivers and read.drvid is not None:
        # the tags of the read's driver, and tags whose driver is unknown (as tags.py)
        te_scid = table(te.name, column("id", Integer), column("scid", Integer),
                        schema=tables.schema).alias("te_drv")
        sc = historian_catalog(tables.schema).scinfo
        of_driver = (select(te_scid.c.id)
                     .select_from(te_scid.outerjoin(sc, sc.c.id == te_scid.c.scid))
                     .where(or_(sc.c.drvid == read.drvid, sc.c.drvid.is_(None))))
        where.append(data.c.tagid.in_(of_driver))
    return where


def count_filtered(conn: Connection, tables: Tables, month: MonthSlice,
                   patterns: list[str], good_quality: list[int], drivers: bool = False) -> int:
    """Rows of the slice for the matching tags with a good dataintegrity: the expected
    output, summed over the slice's tables."""
    total = 0
    te = tables.sqlth_te
    for read in month.table_reads:
        data = historian_data_table(tables, read.table)
        stmt = (select(func.count())
                .select_from(data.join(te, te.c.id == data.c.tagid))
                .where(*_read_filter(tables, read, data, patterns, good_quality, drivers)))
        total += int(conn.execute(stmt).scalar_one())
    return total


def tag_day_counts(tables: Tables, read: TableRead, patterns: list[str],
                   good_quality: list[int], drivers: bool = False) -> Select:
    """``SELECT tagpath, day, count(*)`` of one table read, grouped by tag path and epoch
    day (``t_stamp // 86400000``: integer division on every dialect)."""
    te = tables.sqlth_te
    data = historian_data_table(tables, read.table)
    # the day in a subquery: GROUP BY names a column, not an expression with a bound
    # parameter (which some drivers send twice as two different parameters)
    rows = (select(te.c.tagpath, (data.c.t_stamp // DAY_MS).label("day"))
            .select_from(data.join(te, te.c.id == data.c.tagid))
            .where(*_read_filter(tables, read, data, patterns, good_quality, drivers))
            .subquery("r"))
    return (select(rows.c.tagpath, rows.c.day, func.count().label("n"))
            .group_by(rows.c.tagpath, rows.c.day))


def count_by_tag_day(conn: Connection, tables: Tables, month: MonthSlice,
                     patterns: list[str], good_quality: list[int], drivers: bool = False
                     ) -> dict[tuple[str, int], int]:
    """``(tagpath, epoch day) -> rows`` of the slice, a GROUP BY in the database per table.

    A tag path with several ids (a retagged tag) is one key: the extraction writes all
    its ids into one tag folder.
    """
    out: dict[tuple[str, int], int] = defaultdict(int)
    for read in month.table_reads:
        stmt = tag_day_counts(tables, read, patterns, good_quality, drivers)
        for r in conn.execute(stmt):
            out[(r.tagpath, int(r.day))] += int(r.n)
    return dict(out)
