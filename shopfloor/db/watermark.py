"""Named watermarks in ``pipeline_watermark`` (moved only inside the writer's transaction)."""

from sqlalchemy import Connection, select

from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert


def get_watermark(conn: Connection, tables: Tables, name: str) -> str | None:
    """The stored value of watermark ``name``, or ``None`` if it was never set."""
    t = tables.pipeline_watermark
    return conn.execute(select(t.c.value).where(t.c.name == name)).scalar_one_or_none()


def set_watermark(conn: Connection, tables: Tables, name: str, value: str) -> None:
    """Set watermark ``name`` to ``value`` (call it in the same transaction as the write)."""
    upsert(conn, tables.pipeline_watermark,
           [{"name": name, "value": value, "updated_at": utcnow()}], ["name"])
