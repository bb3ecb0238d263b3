"""Tables the dashboard reads that other parts of the suite own: ``anomaly`` and
``quality_score``. Taken from :class:`~shopfloor.db.schema.Tables` when it defines them,
otherwise defined here with the columns those parts write, only for reading. A database
where they do not exist yet is normal: :func:`table_exists` lets a panel say "no data yet".
"""

from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)

from shopfloor.db.schema import Tables
from shopfloor.db.types import UtcDateTime


@lru_cache(maxsize=16)
def _read_only_tables(schema: str | None) -> dict[str, Table]:
    md = MetaData(schema=schema)
    anomaly = Table(
        "anomaly", md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("kind", String(16), nullable=False),
        Column("loc_id", String(32), nullable=False),
        Column("measure", String(32), nullable=False),
        Column("hour_start", UtcDateTime, nullable=False),
        Column("hours", Integer),
        Column("score", Float(53)),
        Column("detail", Text),
        Column("run_id", String(64)),
        Column("detected_at", UtcDateTime),
    )
    quality = Table(
        "quality_score", md,
        Column("flow", String(64), nullable=False),
        Column("subject", String(255)),
        Column("window_start", UtcDateTime),
        Column("window_end", UtcDateTime),
        *(Column(c, Float(53)) for c in ("completeness", "validity", "uniqueness",
                                         "timeliness", "overall")),
        Column("rows_in", Integer),
        Column("run_id", String(64)),
        Column("recorded_at", UtcDateTime),
    )
    return {"anomaly": anomaly, "quality_score": quality}


def _table(tables: Tables, name: str) -> Table:
    owned = getattr(tables, name, None)  # once schema.py defines it, that one is used
    return owned if isinstance(owned, Table) else _read_only_tables(tables.schema)[name]


def anomaly_table(tables: Tables) -> Table:
    """The ``anomaly`` table (kind, loc_id, measure, hour_start UTC, hours, score, detail)."""
    return _table(tables, "anomaly")


def quality_table(tables: Tables) -> Table:
    """The ``quality_score`` table (one row per scored batch of any flow)."""
    return _table(tables, "quality_score")


def table_exists(conn: Connection, table: Table) -> bool:
    """Whether ``table`` exists in the database ``conn`` is connected to."""
    return inspect(conn).has_table(table.name, schema=table.schema)
