"""Registration: list what may be new under a prefix, insert the new JSON keys as PENDING.

Plain Python (``tasks/s3_compaction.py`` wraps it; ``benchmarks/bench_registration.py``
times it). The listing is incremental (:mod:`shopfloor.compaction.listing`): its cost
follows the streams and their recent hours, not the history of the bucket.
"""

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine

from shopfloor.compaction.keys import is_json_key, register_keys, registry_rows
from shopfloor.compaction.listing import known_streams, list_new, remember_streams
from shopfloor.db.engine import write_transaction
from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.storage import StorageLocation


@dataclass
class RegistrationCounts:
    """What one registration saw. ``json`` counts every JSON object listed, registered
    or not; ``json = new + known + no_district``."""

    listed: int = 0
    json: int = 0
    new: int = 0
    known: int = 0
    no_district: int = 0
    streams: int = 0
    list_calls: int = 0
    full_listing: bool = False

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


@dataclass
class Registration:
    counts: RegistrationCounts
    unknown: list[str]


def register(location: StorageLocation, engine: Engine, tables: Tables, prefix: str,
             district: str | None, overlap_hours: int, full_listing: bool = False,
             now: datetime | None = None) -> Registration:
    """List ``prefix`` of ``location`` incrementally and register the new JSON keys.

    ``district`` (if given) is the district of every key; else the key layout names it
    (``dstrct_code=XXXX/`` or a leading ``XXXX/``). Keys naming none are skipped and
    returned in ``unknown``. The per-stream listing positions move in the same
    transaction as the keys are inserted: a failed registration lists the same again.
    """
    storage = location.url("")
    with engine.begin() as conn:
        # Registries created before incremental listing lack the table; it is cheap to add.
        tables.s3_listing.create(conn, checkfirst=True)
        known = known_streams(conn, tables, storage, prefix)
    listing = list_new(location, prefix, known, overlap_hours, full_listing)
    rows, unknown = registry_rows(listing.objects, district, now or utcnow())
    # Reads the known keys, then inserts: hold the write lock from the start (SQLite).
    with write_transaction(engine) as conn:
        new = register_keys(conn, tables, rows)
        remember_streams(conn, tables, storage, listing, known)
    n_json = sum(1 for o in listing.objects if is_json_key(o.key))
    counts = RegistrationCounts(
        listed=len(listing.objects), json=n_json, new=new, known=len(rows) - new,
        no_district=len(unknown), streams=len(listing.streams_listed),
        list_calls=listing.list_calls, full_listing=full_listing)
    return Registration(counts, unknown)
