"""The historian's tags in the tag registry (``tags``), so that its tags have ids and
sit beside the captured ones in ``shopfloor tags list`` and the dashboard.

One registry row per tag path, under the historian as its device: a path Ignition
retagged over time (a new ``sqlth_te`` id, the old one retired) is one tag whose
``source_name`` follows its newest id, so its history stays one tag's.
"""

from sqlalchemy import Connection, select

from shopfloor.db.schema import Tables
from shopfloor.historian.tags import tag_filter
from shopfloor.tags.registry import TagInfo

# Ignition's sqlth_te.datatype: which of sqlt_data's value columns holds the tag's values.
DATA_TYPES = {0: "int", 1: "float", 2: "string", 3: "datetime"}


def historian_tag_infos(conn: Connection, tables: Tables, patterns: list[str],
                        device: str) -> list[TagInfo]:
    """The registry entries of the ``sqlth_te`` tags matching ``patterns``, one per path
    (its newest id), by path."""
    t = tables.sqlth_te
    rows = conn.execute(select(t.c.id, t.c.tagpath, t.c.datatype)
                        .where(tag_filter(tables, patterns)).order_by(t.c.id))
    newest = {r.tagpath: r for r in rows}  # ordered by id: the last one of a path wins
    return [TagInfo(name=path, device=device, location=None, unit=None,
                    data_type=DATA_TYPES.get(r.datatype, "unknown"), description=None,
                    source_name=f"sqlth_te:{r.id}")
            for path, r in sorted(newest.items())]
