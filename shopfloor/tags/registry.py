"""The tag registry: one row per (device, tag name) with what the tag is, and its id.

Filled from the register maps (capture registers a device's tags before it writes its
first samples; ``shopfloor tags import``). Every write is an upsert keyed ``(device,
name)``, so repeating it changes nothing. A tag renamed in the map keeps its id (and so
its history) when its source name (its register) is unchanged and its old name is gone
from the map.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, select, update

from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert

KEY = ("device", "name")


@dataclass(frozen=True)
class TagInfo:
    """What the registry knows about one tag."""

    name: str
    device: str
    location: str | None
    unit: str | None
    data_type: str
    description: str | None
    source_name: str | None


def _renames(known: dict[str, dict], tags: Sequence[TagInfo]) -> dict[str, str]:
    """``old name -> new name`` for tags whose register kept its source name while its
    name changed (the old name no longer in the map, the new one not yet registered)."""
    names = {t.name for t in tags}
    by_source = {row["source_name"]: name for name, row in known.items()
                 if row["source_name"] and name not in names}
    out = {}
    for t in tags:
        old = by_source.get(t.source_name) if t.source_name else None
        if t.name not in known and old is not None and old not in out:
            out[old] = t.name
    return out


def register_tags(conn: Connection, table: Table, tags: Sequence[TagInfo],
                  now: datetime | None = None) -> dict[tuple[str, str], int]:
    """Upsert ``tags`` into the registry in the caller's transaction; ``(device, name)
    -> id`` of each. A renamed tag (see the module) keeps its id."""
    if not tags:
        return {}
    now = now or utcnow()
    ids: dict[tuple[str, str], int] = {}
    for device in sorted({t.device for t in tags}):
        mine = [t for t in tags if t.device == device]
        rows = conn.execute(select(table).where(table.c.device == device)).mappings()
        known = {r["name"]: dict(r) for r in rows}
        for old, new in _renames(known, mine).items():
            conn.execute(update(table).where(table.c.device == device, table.c.name == old)
                         .values(name=new, updated_at=now))
        upsert(conn, table, [{**asdict(t), "updated_at": now} for t in mine], list(KEY))
        found = conn.execute(select(table.c.name, table.c.id).where(table.c.device == device))
        ids.update({(device, name): int(i) for name, i in found})
    return {(t.device, t.name): ids[(t.device, t.name)] for t in tags}


def list_tags(conn: Connection, table: Table, device: str | None = None,
              location: str | None = None) -> list[dict]:
    """The registered tags (optionally of one device or location), by device and name."""
    query = select(table).order_by(table.c.device, table.c.name)
    if device:
        query = query.where(table.c.device == device)
    if location:
        query = query.where(table.c.location == location)
    return [dict(r) for r in conn.execute(query).mappings()]
