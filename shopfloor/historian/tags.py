"""Tags from ``sqlth_te`` chosen by SQL LIKE patterns, and their partition folder names.

Patterns are SQL ``LIKE`` patterns matched against ``tagpath``: ``%`` is any run of
characters, ``_`` any one character, and a backslash escapes either
(``line\\_1/%``). They go to the database as bound parameters.
"""

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select

from shopfloor.db.schema import Tables

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_PATTERN_LENGTH = 255  # tagpath's column length


@dataclass(frozen=True)
class Tag:
    """One historian tag and the folder name its readings are partitioned under."""

    id: int
    tagpath: str

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


def tag_filter(tables: Tables, patterns: list[str]):
    """The WHERE clause ``tagpath LIKE :p1 ESCAPE '\\' OR ...`` (bound parameters)."""
    tagpath = tables.sqlth_te.c.tagpath
    return or_(*(tagpath.like(p, escape="\\") for p in patterns))


def load_tags(conn: Connection, tables: Tables, patterns: list[str]) -> list[Tag]:
    """Every tag whose path matches one of ``patterns``, ordered by id."""
    t = tables.sqlth_te
    stmt = select(t.c.id, t.c.tagpath).where(tag_filter(tables, patterns)).order_by(t.c.id)
    return [Tag(int(r.id), r.tagpath) for r in conn.execute(stmt)]
