"""Where a batch of readings goes: validation, ``temperature_raw``, quarantine, raw logs."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandera.pandas as pa
from sqlalchemy import Connection, Engine

from shopfloor.db.copy_upsert import can_copy_upsert, copy_upsert_csv
from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert
from shopfloor.modbus.batch import Batch, epoch_ms
from shopfloor.modbus.capture import CaptureStats
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.landed import landed_reasons, unlanded_rest
from shopfloor.modbus.readings import KEY_COLUMNS, json_objects, reading_schema
from shopfloor.modbus.tag_points import (
    StaleRuns,
    device_tag_ids,
    ensure_tag_tables,
    load_runs,
    tag_points,
    write_points,
)
from shopfloor.quality import (
    BatchCounts,
    QuarantinedRow,
    Subject,
    put_quality,
    quality_row,
    split_valid,
    timely_count,
    write_quarantine,
)
from shopfloor.storage import StorageLocation

QUALITY_FLOW = "modbus-capture"
# A reading written more than this after its sample time counts as late (timeliness):
# batches are flushed about once a minute, so an on-time reading is at most ~1 min old.
LATENESS_BOUND = timedelta(minutes=5)
REPLAY_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class Judgement:
    """A batch judged: ``keep`` (bool per sample), ``rejected`` (positions, in order)
    and ``quarantined`` (the rejected samples with pandera's reasons, same order);
    ``lost`` (bool per sample, None: none) marks samples the device did not answer at
    all, which are neither kept nor rejected: they are no reading, only bad points."""

    keep: np.ndarray
    rejected: np.ndarray
    quarantined: list[QuarantinedRow]
    lost: np.ndarray | None = None

    def answered(self, batch: Batch) -> tuple[Batch, "Judgement"]:
        """The batch and its judgement without the samples nobody answered."""
        if self.lost is None:
            return batch, self
        have = np.flatnonzero(~self.lost)
        at = np.full(len(batch), -1, np.int64)
        at[have] = np.arange(len(have))
        return batch.take(have), Judgement(self.keep[have], at[self.rejected],
                                           self.quarantined)

    def landed(self, batch: Batch) -> list[list[dict[str, Any]]]:
        """Per sample, the reasons its landed line carries (empty: valid)."""
        reasons: list[list[dict[str, Any]]] = [[] for _ in range(len(batch))]
        for pos, row in zip(self.rejected.tolist(), self.quarantined, strict=True):
            reasons[pos] = landed_reasons(row, batch.missing[pos], batch.cfg)
        return reasons


def judge(batch: Batch, schema: Callable[[], pa.DataFrameSchema], fast: bool = True
          ) -> Judgement:
    """Judge every sample of ``batch`` against the reading schema (``schema()``, built
    only when a row needs it).

    Pandera (the quality core) judges every row the vectorised pre-check flags and gives
    the reasons; rows it does not flag pass as they are, without a frame. A sample the
    device answered no read of is ``lost``, neither kept nor rejected.
    """
    lost = batch.no_answer()
    if lost.any():  # judged without them; they stay out of raw rows and quarantine
        have = np.flatnonzero(~lost)
        inner = judge(batch.take(have), schema, fast)
        keep = np.zeros(len(batch), bool)
        keep[have[inner.keep]] = True
        return Judgement(keep, have[inner.rejected], inner.quarantined, lost)
    suspect = batch.suspect() if fast else np.ones(len(batch), bool)
    if not suspect.any():
        return Judgement(np.ones(len(batch), bool), np.empty(0, int), [])
    positions = np.flatnonzero(suspect)
    checked = split_valid(batch.take(positions).frame(), schema())
    passed = np.zeros(len(positions), bool)
    passed[checked.valid.index.to_numpy(dtype=int)] = True
    keep = ~suspect
    keep[positions[passed]] = True
    return Judgement(keep, positions[~passed], checked.quarantined)


@dataclass
class ReadingSink:
    """Validates each batch and writes it; every write is keyed, so a repeat overwrites.

    ``engine=None`` skips the database (rows are still validated and counted in
    ``rows_valid`` / ``rows_quarantined``);
    ``storage=None`` skips the JSON landing.
    """

    cfg: DeviceConfig
    stats: CaptureStats
    run_id: str
    engine: Engine | None = None
    tables: Tables | None = None
    storage: StorageLocation | None = None
    fast: bool = True  # False: every row through pandera (slower, same outcome)
    # The run's quality so far: one quality_score row per device and run, replaced in
    # every batch's transaction, so it always describes exactly the batches committed.
    counts: BatchCounts = field(default_factory=BatchCounts)
    quality: dict[str, Any] | None = None
    quality_id: int | None = None
    started: datetime | None = None
    last: datetime | None = None
    # Tag name -> id in the warehouse's tag registry, registered with the first write.
    tag_ids: dict[str, int] | None = None
    points_written: int = 0
    # Per tag with ``stale_after``, its run of equal values so far (committed batches).
    stale: StaleRuns = field(default_factory=StaleRuns)

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        """Built on first need: about 0.2 ms per tag, and clean batches never need it."""
        return reading_schema(self.cfg.tags)

    def judge(self, batch: Batch) -> Judgement:
        """Every sample's verdict: which pass, which are rejected and why."""
        return judge(batch, lambda: self.schema, self.fast)

    def validate(self, batch: Batch) -> tuple[Batch, list[QuarantinedRow]]:
        """Split a batch into its valid rows and the quarantined ones with reasons."""
        judged = self.judge(batch)
        return batch.take(judged.keep), judged.quarantined

    def __call__(self, batch: Batch) -> None:
        judged = self.judge(batch)
        self.stats.rows_valid += int(judged.keep.sum())
        if self.engine is not None and self.tables is not None:
            self.store(batch, judged)
        else:
            self.stats.rows_quarantined += len(judged.quarantined)  # counted, not stored
        if self.storage is not None and len(batch):
            self.land(batch, judged)

    def store(self, batch: Batch, judged: Judgement, count_quarantined: bool = True) -> None:
        """Upsert the valid rows, insert the quarantined ones and the run's quality row,
        in one transaction (``count_quarantined``: add them to the stats; a forwarder
        whose capture already counted them passes False)."""
        valid = batch.take(judged.keep)
        answered, _ = judged.answered(batch)  # readings; samples nobody answered are not
        if len(answered):  # the run's span: first to last sample time written
            times = answered.capture_dts
            self.started = min(self.started or times[0], min(times))
            self.last = max(self.last or times[0], max(times))
        # A reading is quarantined after it was taken: earlier rows cannot be its replay
        # (an hour of margin for clocks).
        since = (min(answered.capture_dts) - REPLAY_MARGIN) if len(answered) else None
        self._write(valid, judged.quarantined, self.batch_counts(answered, len(valid)),
                    count_quarantined, since, batch)

    def land(self, batch: Batch, judged: Judgement) -> int:
        """Write the batch's JSON-lines objects; returns how many."""
        assert self.storage is not None
        batch, judged = judged.answered(batch)  # nothing arrived from a lost sample
        if not len(batch):
            return 0
        # Every sample lands, rejected ones with their reasons: raw is what arrived.
        # Named by the batch's first slot (epoch ms), not by the run: a repeat of the
        # same slots (a retry, a forwarder's replay) finds its object there and adds
        # nothing; keys sort by time in a folder.
        name = str(epoch_ms(batch.capture_dts[0]))
        objects = json_objects(batch, name, judged.landed(batch))
        written = sum(self._land_object(key, body) for key, body in objects.items())
        self.stats.objects_landed += written
        return written

    def _land_object(self, key: str, body: bytes) -> int:
        """Write ``body`` at ``key``, or only the lines an object already there lacks
        under their own name (:func:`unlanded_rest`); 1 when an object was written."""
        assert self.storage is not None
        for _ in range(body.count(b"\n") + 1):  # each round lands or drops a line
            if not self.storage.exists(key):
                self.storage.write_bytes(key, body)
                return 1
            landed = self.storage.read_bytes(key)
            if landed == body:
                return 0
            rest = unlanded_rest(key, body, landed)
            if rest is None:
                return 0
            if rest[0] == key:  # an object that lacks its own first slot: not ours to keep
                self.storage.write_bytes(key, body)
                return 1
            key, body = rest
        return 0

    def batch_counts(self, batch: Batch, valid: int, now: datetime | None = None
                     ) -> BatchCounts:
        """A batch's quality counts: samples in, valid, rejected, repeated sample times
        (duplicates), and those written within :data:`LATENESS_BOUND` of their time."""
        times = batch.capture_dts
        return BatchCounts(
            rows_in=len(batch), rows_valid=valid, rows_quarantined=len(batch) - valid,
            rows_duplicate=len(times) - len(set(times)),
            rows_timely=timely_count(now or utcnow(), times, LATENESS_BOUND))

    def run_quality(self, counts: BatchCounts, now: datetime) -> dict[str, Any]:
        """The run's quality row with ``counts`` added: completeness against the samples
        the run was planned to take (``stats.samples_expected``)."""
        total = self.counts + counts
        total.expected = self.stats.samples_expected or None
        return quality_row(Subject(QUALITY_FLOW, self.cfg.name, self.started, self.last),
                           total, self.run_id, now)

    def _points(self, conn: Connection, batch: Batch | None, now: datetime
                ) -> tuple[dict[str, int] | None, int]:
        """Every tag of every reading of ``batch`` (valid or quarantined) into
        ``tag_samples``, each point with its own quality, in the caller's transaction
        (a repeat overwrites on (tag, time)); the device's tags are registered first, on
        the sink's first write. Returns the tag ids and the points written."""
        assert self.tables is not None
        if batch is None:
            return self.tag_ids, 0
        ids = self.tag_ids if self.tag_ids is not None else \
            device_tag_ids(conn, self.tables, self.cfg)
        if not self.stale.loaded and len(batch):  # where the last run's values left off
            self.stale.runs = load_runs(conn, self.tables.tag_samples, self.cfg, ids,
                                        min(batch.capture_dts))
            self.stale.loaded = True
        points = tag_points(batch, ids, self.stale)
        return ids, write_points(conn, self.tables.tag_samples, points, now)

    def _write(self, valid: Batch, quarantined: list[QuarantinedRow],
               counts: BatchCounts, count_quarantined: bool = True,
               since: datetime | None = None, batch: Batch | None = None) -> None:
        assert self.engine is not None and self.tables is not None
        if batch is not None and self.tag_ids is None:
            ensure_tag_tables(self.engine, self.tables)
        now = utcnow()
        # A raw table without ingested_at (SHOPFLOOR_RAW_INGESTED_AT=false) gets none.
        ingested_at = now if self.tables.raw_has_ingested_at else None
        # A forwarder's backlog on PostgreSQL: CSV built from the arrays, then COPY.
        copy = can_copy_upsert(self.engine, len(valid))
        rows = [] if copy else valid.raw_rows(ingested_at)
        # A batch of lost samples only (a device that never answered) is no reading:
        # the run's quality row waits for its first one.
        quality = self.run_quality(counts, now) if counts.rows_in or self.quality_id \
            is not None else None
        with self.engine.begin() as conn:
            if copy:
                columns, csv = valid.raw_csv(ingested_at)
                copy_upsert_csv(conn, self.tables.temperature_raw, columns, csv,
                                list(KEY_COLUMNS))
            elif rows:
                upsert(conn, self.tables.temperature_raw, rows, list(KEY_COLUMNS))
            # Keyed like the raw rows: a replay of readings already quarantined (a
            # forwarder killed between its commit and its cursor) replaces them.
            written = write_quarantine(conn, self.tables, quarantined,
                                       f"modbus:{self.cfg.name}", self.run_id,
                                       replacing_since=since)
            row_id = (put_quality(conn, self.tables, quality, self.quality_id)
                      if quality is not None else None)
            ids, points = self._points(conn, batch, now)
        self.tag_ids, self.points_written = ids, self.points_written + points
        self.stale.commit()  # the runs of equal values now written
        # Only after the commit: a failed batch leaves the run's row as it was.
        if quality is not None:
            self.quality_id, self.quality = row_id, quality
            self.stats.quality = quality
        self.counts = self.counts + counts
        self.stats.rows_written += len(valid)
        if count_quarantined:
            self.stats.rows_quarantined += written
