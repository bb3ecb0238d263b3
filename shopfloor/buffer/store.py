"""A collector's durable sample buffer: one SQLite file in WAL mode, per-sink cursors.

Every sample is appended in its own transaction before its slot counts as taken; each
sink (the warehouse, the landing) keeps its own cursor per device in the same file, so
a forwarder that stops (an outage, a crash, ``kill -9``) resumes where its last commit
left it, and one sink's outage never holds back the other. A sample is deleted once
every sink's cursor for its device has passed it. The size and age limits drop the
oldest samples first and count every dropped sample (docs/store_and_forward.md).

Why ``synchronous=NORMAL``: in WAL mode a commit is then an append to the log without
an fsync. It survives the process being killed (the log is in the OS's page cache),
and the file is never corrupted; only a power cut or kernel crash can lose the commits
since the last checkpoint. ``FULL`` (``SHOPFLOOR_BUFFER_SYNC=full``) fsyncs every
commit, a millisecond or more per sample on an ordinary disk.
"""

import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shopfloor.buffer.wal import WalTail, inspect_wal
from shopfloor.errors import ShopfloorError, UserError

# 24 h of 100 devices x 20 tags every second is 8.64 M device samples (172.8 M tag
# values); a sample of 20 float32 tags is 134 bytes on disk with its index (measured,
# benchmarks/README.md), so 24 h take 1.16 GB: the default holds about 62 h of that
# plant. Age: a week, longer than any outage worth buffering for.
DEFAULT_MAX_BYTES = 3 * 1024**3
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600.0
FULL_WARNING = 0.8  # fill ratio above which the flow emits shopfloor.buffer.filling
# A run whose heartbeat (every append, and HEARTBEAT_SECONDS from a thread while it
# runs) is older than this is taken as gone (killed, crashed): its last landing batch of
# each device is closed and may be forwarded. A live run that overlaps it keeps its own.
HEARTBEAT_SECONDS = 2.0
RUN_GONE_SECONDS = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, dropped INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS config (
    id INTEGER PRIMARY KEY, device INTEGER NOT NULL, text TEXT NOT NULL,
    UNIQUE (device, text));
CREATE TABLE IF NOT EXISTS sample (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, device INTEGER NOT NULL, capture_ms INTEGER NOT NULL,
    grp INTEGER NOT NULL, run INTEGER NOT NULL, cfg INTEGER NOT NULL, body BLOB NOT NULL,
    extra TEXT, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, seen REAL NOT NULL DEFAULT 0,
    ended INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sample_device_seq ON sample (device, seq);
CREATE TABLE IF NOT EXISTS cursor (
    sink TEXT NOT NULL, device INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (sink, device));
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, seq INTEGER, device INTEGER, reason TEXT NOT NULL,
    body BLOB, extra TEXT, at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Limits:
    """How much the buffer may hold: used bytes and the age of the oldest sample."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS


@dataclass(frozen=True)
class Record:
    """One buffered sample: ``body`` and ``extra`` are the caller's encoding."""

    seq: int
    device: str
    capture_ms: int
    grp: int
    run: str
    body: bytes
    extra: str | None
    cfg: int = 0  # the device's configuration the sample was taken under


@dataclass(frozen=True)
class Backlog:
    """What one sink has still to forward: samples and the oldest one's time."""

    sink: str
    samples: int
    oldest_ms: int | None

    def age_seconds(self, now: float) -> float:
        return 0.0 if self.oldest_ms is None else max(0.0, now - self.oldest_ms / 1000)


@dataclass(frozen=True)
class BufferState:
    """What a buffer holds at one instant (:meth:`SampleBuffer.state`)."""

    backlogs: list[Backlog]  # one per sink with a cursor in the file
    fill_ratio: float  # used bytes over the size limit
    dropped: int  # samples dropped by the limits since the file was made


_BACKLOG = ("SELECT count(*), min(s.capture_ms) FROM sample s JOIN cursor c "
            "ON c.device = s.device AND c.sink = ? WHERE s.seq > c.seq")


def checksum(body: bytes, extra: str | None) -> int:
    """CRC-32 of a record's payload: a record damaged on disk is found on reading."""
    return zlib.crc32((extra or "").encode(), zlib.crc32(body))


def buffer_path(home: Path, collector: str) -> Path:
    """``<home>/buffer/<collector>.sqlite3``: one file per collector."""
    if not collector or not all(c.isalnum() or c in "-_." for c in collector):
        raise UserError(f"invalid collector name {collector!r}: letters, digits, - _ .")
    return home / "buffer" / f"{collector}.sqlite3"


def quarantine_tail(path: Path, tail: WalTail, now: float) -> Path:
    """Copy the torn part of ``path``'s WAL beside it, under ``quarantine/``, with its
    reason; SQLite then drops it on open."""
    wal = Path(f"{path}-wal")
    folder = path.parent / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    out = folder / f"{path.name}.{stamp}.wal-tail"
    with wal.open("rb") as src:
        src.seek(tail.valid_bytes)
        out.write_bytes(src.read(tail.torn_bytes))
    out.with_suffix(".reason").write_text(
        f"{tail.reason}; bytes {tail.valid_bytes}-{tail.end_bytes} of {wal.name} "
        f"({tail.commits} whole transactions before them)\n")
    return out


class SampleBuffer:
    """The buffer file of one collector, shared by the threads of a run (one connection
    behind a lock) and safe against other processes (SQLite's own locking).

    ``recovered`` says what opening found: a torn WAL tail quarantined (one line to log).
    """

    def __init__(self, path: Path, limits: Limits | None = None, synchronous: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.path, self.limits, self.clock = path, limits or Limits(), clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self.recovered: str | None = None
        tail = inspect_wal(Path(f"{path}-wal"))
        if tail is not None:
            out = quarantine_tail(path, tail, clock())
            self.recovered = (f"buffer {path.name}: torn tail of {tail.torn_bytes} bytes "
                              f"quarantined to {out.name} ({tail.reason})")
        sync = (synchronous or os.environ.get("SHOPFLOOR_BUFFER_SYNC") or "normal").upper()
        if sync not in ("NORMAL", "FULL"):
            raise UserError(f"invalid SHOPFLOOR_BUFFER_SYNC {sync!r}: normal or full")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync}")  # one of two checked words
        self._db.executescript(_SCHEMA)
        self._reader: sqlite3.Connection | None = None  # see state()
        self._closed = False
        self._read_lock = threading.Lock()
        self._devices: dict[str, int] = {}
        self._runs: dict[str, int] = {}
        self._configs: dict[str, int] = {}  # device -> its current configuration's id

    # -- writing ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the file (a checkpoint folds the log into it)."""
        with self._read_lock:
            self._closed = True
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._lock:
            self._db.close()

    def put_device(self, name: str, config: str) -> None:
        """Record ``name`` and its configuration (how its samples decode). Samples carry
        the configuration they were taken under, so a changed register map never
        decodes an older backlog."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO device (name) VALUES (?)", (name,))
            self._devices.pop(name, None)
            dev = self._device_id(name)
            self._db.execute("INSERT OR IGNORE INTO config (device, text) VALUES (?, ?)",
                             (dev, config))
            self._configs[name] = self._db.execute(
                "SELECT id FROM config WHERE device = ? AND text = ?", (dev, config)).fetchone()[0]

    def _device_id(self, name: str) -> int:
        if name not in self._devices:
            row = self._db.execute("SELECT id FROM device WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ShopfloorError(f"device {name!r} is not in buffer {self.path.name}")
            self._devices[name] = row[0]
        return self._devices[name]

    def config(self, cfg: int) -> str:
        """The configuration text with id ``cfg``."""
        with self._lock:
            return self._db.execute("SELECT text FROM config WHERE id = ?", (cfg,)).fetchone()[0]

    def start_run(self, run: str) -> None:
        """``run`` captures into this buffer from now on (its heartbeat starts)."""
        with self._lock:
            self._db.execute("UPDATE run SET seen = ?, ended = 0 WHERE id = ?",
                             (self.clock(), self._run_id(run)))

    def heartbeat(self, run: str) -> None:
        """``run`` is alive (its process is)."""
        with self._lock:
            self._db.execute("UPDATE run SET seen = ? WHERE id = ?",
                             (self.clock(), self._run_id(run)))

    def end_run(self, run: str) -> None:
        """``run`` will append nothing more."""
        with self._lock:
            self._db.execute("UPDATE run SET ended = 1 WHERE id = ?", (self._run_id(run),))

    def run_open(self, run: str) -> bool:
        """Whether ``run`` may still append: not ended, and its heartbeat is recent."""
        with self._lock:
            row = self._db.execute("SELECT seen, ended FROM run WHERE name = ?",
                                   (run,)).fetchone()
        return row is not None and not row[1] and self.clock() - row[0] < RUN_GONE_SECONDS

    def register_sink(self, sink: str, device: str) -> None:
        """Give ``sink`` a cursor for ``device`` if it has none: it starts after the
        samples already buffered (those were not meant for it)."""
        with self._lock:
            dev = self._device_id(device)
            self._db.execute(
                "INSERT OR IGNORE INTO cursor (sink, device, seq) "
                "SELECT ?, ?, coalesce(max(seq), 0) FROM sample WHERE device = ?",
                (sink, dev, dev))

    def append(self, device: str, run: str, samples: Sequence[tuple[int, int, bytes, str | None]]
               ) -> int:
        """Append ``(capture_ms, grp, body, extra)`` samples of ``device`` in one
        transaction, then apply the limits. Returns how many older samples the limits
        dropped."""
        with self._lock:
            dev = self._device_id(device)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                run_id, cfg = self._run_id(run), self._config_id(device, dev)
                self._db.executemany(
                    "INSERT INTO sample (device, capture_ms, grp, run, cfg, body, extra, crc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(dev, ms, grp, run_id, cfg, body, extra, checksum(body, extra))
                     for ms, grp, body, extra in samples])
                self._db.execute("UPDATE run SET seen = ? WHERE id = ?", (self.clock(), run_id))
                dropped = self._enforce_limits()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dropped

    def _config_id(self, device: str, dev: int) -> int:
        if device not in self._configs:  # not put by this process: the latest one
            self._configs[device] = self._db.execute(
                "SELECT max(id) FROM config WHERE device = ?", (dev,)).fetchone()[0]
        return self._configs[device]

    def _run_id(self, run: str) -> int:
        """A run's number in this file: a sample row carries it, not the 36-byte id."""
        if run not in self._runs:
            self._db.execute("INSERT OR IGNORE INTO run (name) VALUES (?)", (run,))
            self._runs[run] = self._db.execute("SELECT id FROM run WHERE name = ?",
                                               (run,)).fetchone()[0]
        return self._runs[run]

    # -- limits ----------------------------------------------------------------------
    def _used_bytes(self, db: sqlite3.Connection | None = None) -> int:
        db = db or self._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def _drop(self, where: str, params: tuple) -> int:
        counts = self._db.execute(
            f"SELECT device, count(*) FROM sample WHERE {where} GROUP BY device",  # noqa: S608
            params).fetchall()  # ``where`` is one of this module's two constant clauses
        if not counts:
            return 0
        self._db.execute(f"DELETE FROM sample WHERE {where}", params)  # noqa: S608
        self._db.executemany("UPDATE device SET dropped = dropped + ? WHERE id = ?",
                             [(n, dev) for dev, n in counts])
        return sum(n for _, n in counts)

    def _enforce_limits(self) -> int:
        """Drop samples older than the age limit, then the oldest until the used size is
        under the size limit again (with 1 % slack, so not every append drops)."""
        cutoff = round((self.clock() - self.limits.max_age_seconds) * 1000)
        dropped = 0
        # Samples arrive in time order: the oldest row (first by seq, an index lookup)
        # says whether anything is too old, so an append never scans the table.
        oldest = self._db.execute("SELECT capture_ms FROM sample ORDER BY seq LIMIT 1").fetchone()
        if oldest is not None and oldest[0] < cutoff:
            dropped += self._drop("capture_ms < ?", (cutoff,))
        used = self._used_bytes()
        while used > self.limits.max_bytes:
            total = self._db.execute("SELECT count(*) FROM sample").fetchone()[0]
            if total == 0:
                break
            excess = (used - self.limits.max_bytes * 0.99) / used
            n = max(1, min(total, int(total * excess) + 1))
            last = self._db.execute("SELECT seq FROM sample ORDER BY seq LIMIT 1 OFFSET ?",
                                    (n - 1,)).fetchone()[0]
            dropped += self._drop("seq <= ?", (last,))
            used = self._used_bytes()
        return dropped

    def fill_ratio(self) -> float:
        """Used bytes over the size limit."""
        with self._lock:
            return self._used_bytes() / self.limits.max_bytes

    def dropped(self) -> dict[str, int]:
        """Samples dropped by the limits, per device, since the file was made."""
        with self._lock:
            return dict(self._db.execute("SELECT name, dropped FROM device").fetchall())

    # -- forwarding ------------------------------------------------------------------
    def sink_devices(self, sink: str) -> list[str]:
        """Devices ``sink`` has a cursor for (any run's)."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT d.name FROM cursor c JOIN device d ON d.id = c.device "
                "WHERE c.sink = ? ORDER BY d.name", (sink,))]

    def pending(self, sink: str, device: str, limit: int = 5000) -> list[Record]:
        """Up to ``limit`` samples of ``device`` after ``sink``'s cursor, in order.

        A sample whose checksum does not match is moved to the quarantine table with
        its reason and left out; the cursor is not moved past it by this call.
        """
        with self._lock:
            dev = self._device_id(device)
            rows = self._db.execute(
                "SELECT s.seq, s.capture_ms, s.grp, r.name, s.body, s.extra, s.crc, s.cfg "
                "FROM sample s JOIN cursor c ON c.device = s.device AND c.sink = ? "
                "JOIN run r ON r.id = s.run "
                "WHERE s.device = ? AND s.seq > c.seq ORDER BY s.seq LIMIT ?",
                (sink, dev, limit)).fetchall()
            good, bad = [], []
            for r in rows:
                (good if checksum(r[4], r[5]) == r[6] else bad).append(r)
            if bad:
                self._quarantine(dev, bad)
        return [Record(seq, device, ms, grp, run, body, extra, cfg)
                for seq, ms, grp, run, body, extra, _, cfg in good]

    def _quarantine(self, dev: int, rows: list[tuple]) -> None:
        now = self.clock()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO quarantine (seq, device, reason, body, extra, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r[0], dev, f"checksum mismatch (stored {r[6]}, computed "
                  f"{checksum(r[4], r[5])})", r[4], r[5], now) for r in rows])
            self._db.executemany("DELETE FROM sample WHERE seq = ?", [(r[0],) for r in rows])

    def quarantined(self) -> list[tuple[int, str]]:
        """``(seq, reason)`` of every record quarantined on reading."""
        with self._lock:
            return self._db.execute("SELECT seq, reason FROM quarantine ORDER BY id").fetchall()

    def advance(self, sink: str, device: str, seq: int) -> None:
        """Move ``sink``'s cursor for ``device`` to ``seq`` (everything up to it is
        forwarded), and delete the samples every sink has passed."""
        with self._lock:
            dev = self._device_id(device)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE cursor SET seq = max(seq, ?) WHERE sink = ? "
                                 "AND device = ?", (seq, sink, dev))
                self._db.execute(
                    "DELETE FROM sample WHERE device = ? AND seq <= "
                    "(SELECT min(seq) FROM cursor WHERE device = ?)", (dev, dev))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def backlog(self, sink: str) -> Backlog:
        """Samples ``sink`` has not forwarded yet, over all its devices."""
        with self._lock:
            n, oldest = self._db.execute(_BACKLOG, (sink,)).fetchone()
        return Backlog(sink, n, oldest)

    def state(self) -> "BufferState":
        """Every sink's backlog, the fill ratio and the samples dropped, as one snapshot
        read on a connection of its own: in WAL mode it reads while capture appends, so
        counting a large backlog (0.12 s a sink at a million samples) never holds up an
        append, as it would behind the shared connection's lock."""
        with self._read_lock:
            if self._closed:  # a report that outlived its run: nothing to read
                raise ShopfloorError(f"buffer {self.path.name} is closed")
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                               check_same_thread=False)
            db = self._reader
            db.execute("BEGIN")  # one read transaction: the numbers agree with each other
            try:
                sinks = [r[0] for r in db.execute("SELECT DISTINCT sink FROM cursor ORDER BY sink")]
                backlogs = [Backlog(s, *db.execute(_BACKLOG, (s,)).fetchone()) for s in sinks]
                used = self._used_bytes(db)
                dropped = db.execute("SELECT coalesce(sum(dropped), 0) FROM device").fetchone()[0]
            finally:
                db.execute("COMMIT")
        return BufferState(backlogs, used / self.limits.max_bytes, dropped)

    def left_behind(self, sink: str, own_run: str) -> tuple[int, int]:
        """What a run that ends leaves to ``sink``: ``(settled, undecided)`` samples.

        Settled: of ``own_run``, of runs that ended, or of runs gone silent
        (:data:`RUN_GONE_SECONDS`): nobody else will forward them. Undecided: of runs
        that missed heartbeats but are not yet taken as gone (probably killed: worth
        waiting for). Samples of another live run (an overlapping one) are its own.
        """
        now = self.clock()
        with self._lock:
            settled, undecided = self._db.execute(
                "SELECT coalesce(sum(r.name = ? OR r.ended = 1 OR r.seen < ?), 0), "
                "coalesce(sum(NOT (r.name = ? OR r.ended = 1 OR r.seen < ?) AND r.seen < ?), 0) "
                "FROM sample s JOIN cursor c ON c.device = s.device AND c.sink = ? "
                "JOIN run r ON r.id = s.run WHERE s.seq > c.seq",
                (own_run, now - RUN_GONE_SECONDS, own_run, now - RUN_GONE_SECONDS,
                 now - 2 * HEARTBEAT_SECONDS, sink)).fetchone()
        return settled, undecided

    def count(self) -> int:
        """Samples held (forwarded or not by some sink)."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM sample").fetchone()[0]


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"invalid {name} {value!r}: a number") from None
    if number <= 0:
        raise UserError(f"invalid {name} {value!r}: must be > 0")
    return number


def limits_from_env() -> Limits:
    """``$SHOPFLOOR_BUFFER_MAX_BYTES`` and ``$SHOPFLOOR_BUFFER_MAX_AGE_SECONDS``."""
    return Limits(int(_env_number("SHOPFLOOR_BUFFER_MAX_BYTES", DEFAULT_MAX_BYTES)),
                  _env_number("SHOPFLOOR_BUFFER_MAX_AGE_SECONDS", DEFAULT_MAX_AGE_SECONDS))


def alert_age_seconds() -> float:
    """A sink's backlog older than this emits ``shopfloor.buffer.backlog``
    (``$SHOPFLOOR_BUFFER_ALERT_AGE_SECONDS``, default 10 minutes)."""
    return _env_number("SHOPFLOOR_BUFFER_ALERT_AGE_SECONDS", 600.0)


def alarm_every_seconds() -> float:
    """How often a capture run checks its backlog's age and the buffer's fill while it
    runs (``$SHOPFLOOR_BUFFER_ALARM_EVERY_SECONDS``, default 60 s): a long outage is told
    before the run ends."""
    return _env_number("SHOPFLOOR_BUFFER_ALARM_EVERY_SECONDS", 60.0)


def collector_name() -> str:
    """This collector's name (``$SHOPFLOOR_COLLECTOR``, default ``default``): its buffer
    file is ``$SHOPFLOOR_HOME/buffer/<name>.sqlite3``."""
    return os.environ.get("SHOPFLOOR_COLLECTOR", "").strip() or "default"
