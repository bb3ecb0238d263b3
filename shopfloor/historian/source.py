"""What the source database holds for a month slice: does the table exist, how many rows."""

from sqlalchemy import Connection, func, inspect, select

from shopfloor.db.schema import Tables, historian_data_table
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.tags import tag_filter


def table_exists(conn: Connection, tables: Tables, name: str) -> bool:
    return inspect(conn).has_table(name, schema=tables.schema)


def split_existing(conn: Connection, tables: Tables,
                   slices: list[MonthSlice]) -> tuple[list[MonthSlice], list[MonthSlice]]:
    """``(present, missing)``: slices whose monthly table exists, and those whose does not."""
    present, missing = [], []
    for s in slices:
        (present if table_exists(conn, tables, s.table) else missing).append(s)
    return present, missing


def count_filtered(conn: Connection, tables: Tables, month: MonthSlice,
                   patterns: list[str], good_quality: list[int]) -> int:
    """Rows of the slice for the matching tags with a good dataintegrity: the expected output.

    Counted in the database with the same filters as the extraction (a join on
    ``sqlth_te`` with the LIKE patterns), independently of Spark.
    """
    data = historian_data_table(tables, month.table)
    te = tables.sqlth_te
    stmt = (
        select(func.count())
        .select_from(data.join(te, te.c.id == data.c.tagid))
        .where(
            data.c.t_stamp >= month.start_ms,
            data.c.t_stamp < month.end_ms,
            data.c.dataintegrity.in_(good_quality),
            tag_filter(tables, patterns),
        )
    )
    return int(conn.execute(stmt).scalar_one())
