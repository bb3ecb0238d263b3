"""Tags from ``sqlth_te`` chosen by SQL LIKE patterns, and their partition folder names.

Patterns are SQL ``LIKE`` patterns matched against ``tagpath``: ``%`` is any run of
characters, ``_`` any one character, and a backslash escapes either
(``line\\_1/%``). They go to the database as bound parameters.
"""

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Connection, Integer, String, column, or_, select, table

from shopfloor.db.schema import Tables, historian_catalog

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_PATTERN_LENGTH = 255  # tagpath's column length


@dataclass(frozen=True)
class Tag:
    """One historian tag and the folder name its readings are partitioned under."""

    id: int
    tagpath: str
    drvid: int | None = None  # Ignition driver (through sqlth_scinfo), None if unknown

    @property
    def key(self) -> str:
        return partition_key(self.tagpath)


def partition_key(tagpath: str) -> str:
    """A folder-safe, collision-free partition value for ``tagpath``.

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``. When that
    changed anything, 8 hex digits of the path's SHA-1 are appended so that two paths
    that differ only in such characters (``a/b`` and ``a_b``) never share a folder.
    """
    safe = _UNSAFE.sub("_", tagpath).strip("._") or "tag"
    if safe == tagpath:
        return safe
    digest = hashlib.sha1(tagpath.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
    return f"{safe}_{digest}"


def tag_filter(tables: Tables, patterns: list[str], tagpath=None):
    """The WHERE clause ``tagpath LIKE :p1 ESCAPE '\\' OR ...`` (bound parameters), on
    ``sqlth_te.tagpath`` or the ``tagpath`` column given."""
    tagpath = tables.sqlth_te.c.tagpath if tagpath is None else tagpath
    return or_(*(tagpath.like(p, escape="\\") for p in patterns))


def load_tags(conn: Connection, tables: Tables, patterns: list[str],
              drivers: bool = False) -> list[Tag]:
    """Every tag whose path matches one of ``patterns``, ordered by id.

    A path retagged over time (Ignition gives it a new id, with ``created``/``retired``)
    matches with every id: the extraction writes them all into the path's one folder.
    With ``drivers`` each tag carries its driver, ``sqlth_te.scid -> sqlth_scinfo.drvid``
    (``None`` when its scan class is unknown: such a tag is read from every table).
    """
    t = tables.sqlth_te
    if not drivers:
        stmt = select(t.c.id, t.c.tagpath).where(tag_filter(tables, patterns)).order_by(t.c.id)
        return [Tag(int(r.id), r.tagpath) for r in conn.execute(stmt)]
    te = table(t.name, column("id", Integer), column("tagpath", String),
               column("scid", Integer), schema=tables.schema)
    sc = historian_catalog(tables.schema).scinfo
    stmt = (select(te.c.id, te.c.tagpath, sc.c.drvid)
            .select_from(te.outerjoin(sc, sc.c.id == te.c.scid))
            .where(tag_filter(tables, patterns, te.c.tagpath)).order_by(te.c.id))
    return [Tag(int(r.id), r.tagpath, None if r.drvid is None else int(r.drvid))
            for r in conn.execute(stmt)]


def tags_of_driver(tags: list[Tag], drvid: int | None) -> list[Tag]:
    """The tags a table of driver ``drvid`` holds rows of (every tag for ``None``); a
    tag whose driver is unknown is in every table's list."""
    return [t for t in tags if drvid is None or t.drvid is None or t.drvid == drvid]
