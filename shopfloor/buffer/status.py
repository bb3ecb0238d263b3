"""A collector's backlog as rows of the warehouse's ``collector_backlog`` table.

The buffer is a file on the collector's disk, out of the dashboard's reach, so the
capture's forwarders report what it holds per sink into the warehouse after every
forwarding pass and once more when the run closes it (docs/store_and_forward.md).

:func:`backlog_rows` is pure (the buffer's state in, rows out); :func:`buffer_rows`
reads that state; :class:`WarehouseWriter` upserts the rows; :class:`BacklogReporter`
runs the two on its own thread so that a report never holds up capture or a forwarder:
a warehouse that is down makes a report skipped (logged once per outage), and the next
pass tries again.
"""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table

from shopfloor.buffer.store import Backlog, SampleBuffer
from shopfloor.db.upsert import upsert
from shopfloor.errors import first_line

KEY = ("collector", "sink")
# At most one report a second per collector, and counting the buffer (0.25 s for two
# sinks at a million samples, on a core of the collector's) at most 1/SNAPSHOT_DUTY of
# the time: a big backlog is counted less often.
MIN_INTERVAL_SECONDS = 1.0
SNAPSHOT_DUTY = 20.0
FINAL_REPORT_SECONDS = 10.0  # what closing waits for the last report

Row = dict[str, Any]


def backlog_rows(collector: str, backlogs: Sequence[Backlog], fill_ratio: float,
                 dropped: int, now: datetime) -> list[Row]:
    """One ``collector_backlog`` row per sink: samples still to forward, the oldest one's
    time (None when nothing waits), the buffer's dropped samples and fill (per collector,
    the same on each of its rows), and ``now`` as the report's time."""
    return [{"collector": collector, "sink": b.sink, "backlog_samples": b.samples,
             "oldest_sample_at": (None if b.oldest_ms is None
                                  else datetime.fromtimestamp(b.oldest_ms / 1000, UTC)),
             "dropped_samples": dropped, "buffer_fill_pct": round(100 * fill_ratio, 2),
             "reported_at": now}
            for b in backlogs]


def buffer_rows(buffer: SampleBuffer, collector: str, now: datetime | None = None) -> list[Row]:
    """The rows of every sink with a cursor in ``buffer`` (earlier runs' sinks too: their
    samples are on this collector's disk as well)."""
    state = buffer.state()  # its own connection: capture's appends never wait for it
    return backlog_rows(collector, state.backlogs, state.fill_ratio, state.dropped,
                        now or datetime.now(UTC))


@dataclass
class WarehouseWriter:
    """Upserts rows into ``table`` on ``engine`` keyed ``(collector, sink)``, creating the
    table first if the warehouse has none yet (one made before this table existed)."""

    engine: Engine
    table: Table
    _created: bool = False

    def __call__(self, rows: Sequence[Row]) -> None:
        with self.engine.begin() as conn:
            if not self._created:
                self.table.create(conn, checkfirst=True)
            upsert(conn, self.table, rows, KEY)
        self._created = True


class BacklogReporter:
    """Reports ``snapshot()`` through ``write(rows)`` on its own thread whenever
    :meth:`request` is called (after every forwarding pass), at most every
    :data:`MIN_INTERVAL_SECONDS`; :meth:`close` stops it with one last report.

    A report that fails (the warehouse is down, the table cannot be created) is skipped:
    ``warn`` is called once until a report succeeds again, and nothing is raised.
    """

    def __init__(self, snapshot: Callable[[], list[Row]], write: Callable[[list[Row]], None],
                 warn: Callable[[str], None], min_interval: float = MIN_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.snapshot, self.write, self.warn = snapshot, write, warn
        self.min_interval, self.clock = min_interval, clock
        self.reports = self.failures = 0
        self._failing = self._last = False
        self._lock = threading.Lock()  # one report at a time (the thread or the last one)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="buffer-backlog-report",
                                        daemon=True)

    def start(self) -> "BacklogReporter":
        self._thread.start()
        return self

    def request(self) -> None:
        """Ask for a report soon; returns at once (a forwarder's ``after_pass``)."""
        self._wake.set()

    def report_now(self) -> bool:
        """Snapshot and write now; False when it failed (and was skipped)."""
        with self._lock:
            try:
                self.write(self.snapshot())
            except Exception as exc:  # noqa: BLE001 - never raised: capture goes on
                self.failures += 1
                if not self._failing:
                    self.warn(f"{type(exc).__name__}: {first_line(exc)}")  # one line
                self._failing = True
                return False
            self.reports += 1
            self._failing = False
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                break
            self._wake.clear()
            started = self.clock()
            self.report_now()
            took = self.clock() - started
            # Wait out the interval (a stop ends the wait); requests meanwhile coalesce.
            self._stop.wait(max(self.min_interval, SNAPSHOT_DUTY * took) - took)
        self._last = self.report_now()  # the backlog the run leaves

    def close(self, timeout: float = FINAL_REPORT_SECONDS) -> bool:
        """Stop the thread after one last report (the backlog the run leaves); waits for
        it at most ``timeout`` s (a warehouse that hangs never holds up the run's end).
        False when that report failed or did not finish in time."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is None:  # never started: report here
            return self.report_now()
        self._thread.join(timeout)
        return not self._thread.is_alive() and self._last
