"""Incremental listing for registration: list what is new, not the whole history.

Raw objects land in *streams*: a folder whose sub-folders are hour folders
(``YYYYMMDDHH``), e.g. capture's ``dstrct_code=D01/line1-plc/2025112014/<run>.json``.
New objects of a stream arrive in its newest hour folders, but streams interleave in
key order (``line1-plc/2025112015/...`` sorts before ``line2-plc/2025112009/...``), so
one "start after the last key" over the whole bucket would miss most new objects.
Registration therefore remembers, per stream, the last key it listed under an hour
folder (table ``s3_listing``) and next time lists the stream only from
``<stream>/<that hour - overlap_hours>`` on (S3 ``StartAfter``).

Re-listing a trailing window of ``overlap_hours`` hour folders catches objects that
arrive out of key order: object names inside an hour are not ordered (run ids), and a
producer may finish an hour late. An object written into an hour folder older than the
window is only found by a full listing (``full_listing=True``), which a daily schedule
runs (docs/s3_compaction.md).

Folders above the streams (districts, devices) are walked one level at a time
(``StorageLocation.list_folder``, a ``Delimiter='/'`` listing), and a stream already
known is not walked at all: the cost of a run follows the number of streams plus the
objects in their recent hours. A layout without hour folders (the seed's
``BRCB/2025/...``) has no stream and is listed in full every time, as before.
"""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert
from shopfloor.storage import ObjectInfo, StorageLocation

HOUR_FORMAT = "%Y%m%d%H"
# A YYYYMMDDHH folder name (years 1900-2099; the calendar is checked by strptime).
_HOUR = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:[01]\d|2[0-3])")
# The first hour folder in a key: everything before it is the key's stream.
_HOUR_SEGMENT = re.compile(r"(?:^|/)(" + _HOUR.pattern + r")/")


def is_hour_folder(folder: str) -> bool:
    """Whether the last segment of ``folder`` is an hour ``YYYYMMDDHH``."""
    name = folder.rstrip("/").rsplit("/", 1)[-1]
    if not _HOUR.fullmatch(name):
        return False
    try:
        datetime.strptime(name, HOUR_FORMAT)
    except ValueError:  # e.g. 2025023100
        return False
    return True


def stream_of(key: str) -> tuple[str, str] | None:
    """``(stream, hour)`` of a key under an hour folder, else ``None``.

    The stream is the folder holding the first hour folder (``""`` for hour folders at
    the top of the storage).
    """
    m = _HOUR_SEGMENT.search(key)
    if not m or not is_hour_folder(m.group(1)):
        return None
    return key[:m.start(1)].rstrip("/"), m.group(1)


def start_after(stream: str, last_key: str, overlap_hours: int) -> str:
    """Where to resume listing ``stream``: just before the hour folder ``overlap_hours``
    older than the one of ``last_key`` (every key in that hour and later sorts after it)."""
    found = stream_of(last_key)
    if not found or found[0] != stream:
        return f"{stream}/" if stream else ""
    hour = datetime.strptime(found[1], HOUR_FORMAT) - timedelta(hours=overlap_hours)
    floor = hour.strftime(HOUR_FORMAT)
    return f"{stream}/{floor}" if stream else floor


@dataclass
class Listing:
    """What an incremental listing saw: the objects, and per stream the last hour key."""

    objects: list[ObjectInfo] = field(default_factory=list)
    streams_listed: set[str] = field(default_factory=set)
    last_keys: dict[str, str] = field(default_factory=dict)
    list_calls: int = 0

    def add(self, obj: ObjectInfo, stream: str | None = None) -> None:
        self.objects.append(obj)
        if stream is None:
            return
        found = stream_of(obj.key)
        if found and found[0] == stream and obj.key > self.last_keys.get(stream, ""):
            self.last_keys[stream] = obj.key


def list_new(location: StorageLocation, prefix: str, known: dict[str, str],
             overlap_hours: int, full_listing: bool = False) -> Listing:
    """List the objects under ``prefix`` that may be new, given the ``known`` streams
    (stream -> last key listed there). ``full_listing`` lists every stream in full."""
    listing = Listing()
    prefix = prefix.strip("/")
    # A prefix inside a stream (an hour folder or deeper): list it in full, remember nothing.
    found = stream_of(prefix + "/") if prefix else None
    if found:
        listing.list_calls += 1
        for obj in location.list_objects(prefix):
            listing.add(obj)
        return listing
    _walk(location, prefix, known, overlap_hours, full_listing, listing)
    return listing


def _list_stream(location: StorageLocation, stream: str, after: str | None,
                 listing: Listing) -> None:
    listing.list_calls += 1
    listing.streams_listed.add(stream)
    for obj in location.list_objects(stream, start_after=after):
        listing.add(obj, stream)


def _walk(location: StorageLocation, folder: str, known: dict[str, str],
          overlap_hours: int, full: bool, listing: Listing) -> None:
    if folder in known and not full:
        _list_stream(location, folder,
                     start_after(folder, known[folder], overlap_hours), listing)
        return
    listing.list_calls += 1
    folders, objects = location.list_folder(folder)
    if any(is_hour_folder(f) for f in folders):
        # A stream seen for the first time (or a full listing): everything in it.
        _list_stream(location, folder, None, listing)
        return
    for obj in objects:
        listing.add(obj)
    for sub in folders:
        _walk(location, sub, known, overlap_hours, full, listing)


# -- the s3_listing table ---------------------------------------------------------------
def _id_hash(storage: str, stream: str) -> str:
    return hashlib.sha256(f"{storage}\0{stream}".encode()).hexdigest()


def known_streams(conn: Connection, tables: Tables, storage: str, prefix: str
                  ) -> dict[str, str]:
    """Streams of ``storage`` under ``prefix`` already listed once: stream -> last key."""
    t = tables.s3_listing
    rows = conn.execute(select(t.c.stream, t.c.last_key).where(t.c.storage == storage)).all()
    prefix = prefix.strip("/")
    return {s: k for s, k in rows
            if not prefix or s == prefix or s.startswith(prefix + "/")}


def remember_streams(conn: Connection, tables: Tables, storage: str, listing: Listing,
                     known: dict[str, str]) -> int:
    """Store the last key of every stream listed as a whole (never moving one back)."""
    rows = []
    now = utcnow()
    for stream in sorted(listing.streams_listed):
        last = max(listing.last_keys.get(stream, ""), known.get(stream, ""))
        if last:
            rows.append({"id_hash": _id_hash(storage, stream), "storage": storage,
                         "stream": stream, "last_key": last, "updated_at": now})
    if rows:
        upsert(conn, tables.s3_listing, rows, ["id_hash"])
    return len(rows)

