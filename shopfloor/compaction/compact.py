"""Compact one claim: claimed JSON objects -> partitioned Parquet, malformed objects isolated.

The happy path reads every claimed object in one DuckDB ``COPY`` (the cost of the bare
``COPY`` plus a cheap count over the staged Parquet). Only when that read fails does
each object get parsed on its own to find the malformed ones, which are quarantined
while the rest of the batch is written.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import duckdb

from shopfloor.compaction import duck, output
from shopfloor.compaction.claims import ClaimedKey
from shopfloor.compaction.layout import ClaimLayout, sql_string
from shopfloor.compaction.records import bad_heartbeat_rows, is_rejected, unpublished_records
from shopfloor.compaction.sql import compaction_select, describe_sql, merge_type, probe_sql
from shopfloor.errors import ShopfloorError, first_line
from shopfloor.quality import QuarantinedRow
from shopfloor.storage import StorageLocation

INVALID_PARTITION = "hiveperiod=__HIVE_DEFAULT_PARTITION__"
SCHEMA_SAMPLE = 2048  # records per object the schema is detected from
SCHEMA_CHUNK = 25  # objects per DESCRIBE
# What bad input makes DuckDB raise; anything else (network, memory) is not the input's fault.
MALFORMED = (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.BinderException)
# The steps of a claim whose wall time :attr:`CompactResult.seconds` records.
PHASES = ("clean", "schema", "copy", "probe", "count", "fence", "publish")
Hook = Callable[[str], None]
"""Called with the name of each step reached (``after_stage``, ``mid_publish``,
``after_publish``): a seam for fault injection; the default does nothing."""


def no_hook(point: str) -> None:
    """The default :data:`Hook`: do nothing."""


@dataclass
class CompactResult:
    """What one claim produced; ``succeeded`` keys have all their valid rows published."""

    succeeded: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    bad_records: dict[str, list[QuarantinedRow]] = field(default_factory=dict)
    rows_in: int = 0
    rows_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    files: list[str] = field(default_factory=list)
    # Per key: (records published, records not published), for its quality row.
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Wall time of each step reached (see PHASES), for the run's log and artifact.
    seconds: dict[str, float] = field(default_factory=dict)
    # The record fields the staged batch had (name -> DuckDB type), for the tag registry.
    fields: dict[str, str] = field(default_factory=dict)


@contextmanager
def _timed(result: CompactResult, phase: str) -> Iterator[None]:
    started = perf_counter()
    try:
        yield
    finally:
        result.seconds[phase] = result.seconds.get(phase, 0.0) + perf_counter() - started


@dataclass(frozen=True)
class CompactionSpec:
    """Everything about a run that is not the claim itself."""

    raw: StorageLocation
    lake: StorageLocation
    target_prefix: str
    district: str
    tz_offset_hours: float
    ram_limit: str


@dataclass(frozen=True)
class StagedFile:
    """One Parquet file the staging COPY wrote: its URL, rows and bytes."""

    url: str
    rows: int
    size: int


def _path_len(raw: StorageLocation, keys: Sequence[str]) -> int:
    lengths = {len(raw.url(k)) - len(k) for k in keys}
    if len(lengths) != 1:
        raise ShopfloorError("claimed keys do not share one location prefix")
    return lengths.pop()


class _Batch:
    """One DuckDB connection and the claim being written."""

    def __init__(self, con: duckdb.DuckDBPyConnection, spec: CompactionSpec,
                 layout: ClaimLayout) -> None:
        self.con, self.spec, self.layout = con, spec, layout

    def params(self, keys: Sequence[str]) -> dict[str, Any]:
        return {
            "files": [self.spec.raw.url(k) for k in keys],
            "path_len": _path_len(self.spec.raw, keys),
            "tz_us": round(self.spec.tz_offset_hours * 3600 * 10**6),
            "district": self.spec.district,
        }

    def schema(self, keys: Sequence[str], sample_size: int) -> dict[str, str]:
        """Column name -> type over all ``keys``, from ``sample_size`` records of each."""
        files = self.params(keys)["files"]
        columns: dict[str, str] = {}
        # A few objects per DESCRIBE: DuckDB holds every sampled object in memory at once.
        for i in range(0, len(files), SCHEMA_CHUNK):
            sql = describe_sql(sample_size)
            for name, typ, *_ in self.con.execute(sql, {"files": files[i:i + SCHEMA_CHUNK]}
                                                  ).fetchall():
                columns[name] = merge_type(columns.get(name), typ)
        return columns

    def stage(self, keys: Sequence[str], columns: dict[str, str]) -> list[StagedFile]:
        """COPY the keys' records into the claim's staging folder; returns the files."""
        # DuckDB creates the staging folder itself, but not the folders above it.
        self.layout.lake.make_parent(self.layout.staging_key)
        target = sql_string(self.layout.staging_root)
        pattern = sql_string(self.layout.filename_pattern)
        # Paths and the pattern are quoted literals (COPY takes no parameter there);
        # every value inside the SELECT is a bound parameter. RETURN_STATS gives each
        # file's rows and bytes: no listing or HEAD of the written files afterwards.
        copy = (f"COPY ({compaction_select(columns)}) TO {target} (FORMAT parquet, "
                f"COMPRESSION zstd, PARTITION_BY (hiveperiod, dstrct_code), "
                f"FILENAME_PATTERN {pattern}, RETURN_STATS true)")
        cur = self.con.execute(copy, {**self.params(keys), "columns": columns})
        return [StagedFile(str(r[0]), int(r[1]), int(r[2])) for r in cur.fetchall()]

    def counts(self, files: Sequence[StagedFile], keys: Sequence[str]) -> dict[str, int]:
        """Rows per key in ``files`` (only their ``source_file`` column is read)."""
        if not files:
            return {}
        if len(keys) == 1:  # every row is that key's: the COPY already counted them
            return {keys[0]: sum(f.rows for f in files)}
        rows = self.con.execute(
            "SELECT source_file, count(*) FROM read_parquet($f) GROUP BY 1",
            {"f": [f.url for f in files]},
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def probe(self, key: str) -> str | None:
        """Why ``key`` cannot be read on its own, or ``None`` if it parses."""
        try:
            self.con.execute(probe_sql(), {"files": [self.spec.raw.url(key)]}).fetchone()
        except duckdb.BinderException as exc:
            if "non-record JSON" in str(exc):
                return _non_record_reason(self.con, self.spec.raw.url(key))
            return first_line(exc)
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            return first_line(exc)
        except duckdb.IOException as exc:
            if _missing(exc):
                return "object not found (deleted after it was registered?)"
            raise  # a network or permission error says nothing about the object
        return None


def _non_record_reason(con: duckdb.DuckDBPyConnection, url: str) -> str:
    n = con.execute("SELECT count(*) FROM read_json($f, records='auto')", {"f": [url]}).fetchone()
    if n and n[0] == 0:
        return "empty file: no JSON records"
    return "a record is not a JSON object"


def _missing(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and (
        "No files found" in str(exc) or "404" in str(exc))


def _bad_input(exc: duckdb.Error) -> bool:
    """Whether ``exc`` is about the objects (malformed, missing) rather than the system."""
    return isinstance(exc, MALFORMED) or _missing(exc)


def _stage_isolating(batch: _Batch, keys: list[str], result: CompactResult
                     ) -> list[StagedFile]:
    """Stage ``keys``; if the batch read fails, quarantine the objects that fail alone."""
    try:
        return _stage_checked(batch, keys, result, SCHEMA_SAMPLE)
    except duckdb.Error as exc:
        if not _bad_input(exc):
            raise
        output.drop_staging(batch.layout)
    with _timed(result, "probe"):
        for key in keys:
            reason = batch.probe(key)
            if reason:
                result.quarantined[key] = reason
    good = [k for k in keys if k not in result.quarantined]
    # The batch may also have failed on a type the sample did not show (a number column
    # turning to text late in an object): this time the schema comes from every record.
    return _stage_checked(batch, good, result, -1) if good else []


def _stage_checked(batch: _Batch, keys: list[str], result: CompactResult,
                   sample_size: int) -> list[StagedFile]:
    with _timed(result, "schema"):
        columns = batch.schema(keys, sample_size)
    if "heartbeat" not in columns:
        for key in keys:
            result.quarantined[key] = "no heartbeat field in any record"
        return []
    result.fields.update(columns)
    with _timed(result, "copy"):
        return batch.stage(keys, columns)


def _classify(batch: _Batch, keys: Sequence[str], staged: Sequence[StagedFile],
              result: CompactResult) -> list[StagedFile]:
    """Count rows per object; quarantine objects with no usable record. Returns valid files.

    An object whose records are all ``rejected`` landed lines is done (nothing to
    publish, its records quarantined), not malformed.
    """
    valid = [f for f in staged if INVALID_PARTITION not in f.url]
    invalid = [f for f in staged if INVALID_PARTITION in f.url]
    read = [k for k in keys if k not in result.quarantined]
    good, bad = batch.counts(valid, read), batch.counts(invalid, read)
    fallback = set()
    for key in read:
        n_good, n_bad = good.get(key, 0), bad.get(key, 0)
        result.counts[key] = (n_good, n_bad)
        result.rows_in += n_good + n_bad
        rows = _unpublished(batch, key, n_bad, fallback)
        if n_good == 0 and not any(is_rejected(r) for r in rows):
            result.quarantined[key] = (
                "empty file: no JSON records" if n_bad == 0 else
                f"no usable heartbeat in any of its {n_bad} records (missing, non-numeric "
                "or out of range)")
            continue
        result.rows_out += n_good
        result.succeeded.append(key)
        if rows:
            result.bad_records[key] = rows
    if invalid and fallback & set(result.succeeded):
        result.bad_records.update(bad_heartbeat_rows(
            batch.con, [f.url for f in invalid], fallback & set(result.succeeded)))
    return valid


def _unpublished(batch: _Batch, key: str, n_bad: int, fallback: set[str]
                 ) -> list[QuarantinedRow]:
    """The object's unpublished records with their line, read again in Python (only
    objects that have some). Should that reading disagree with DuckDB's count, the
    key goes to ``fallback``: its records are taken from the staged rows, without line."""
    if n_bad == 0:
        return []
    total, rows = unpublished_records(batch.spec.raw.read_bytes(key), key)
    if total != n_bad:
        fallback.add(key)
        return []
    return rows


def no_fence() -> None:
    """The default fence: publish without checking (plain calls and tests of the step)."""


def compact_claim(spec: CompactionSpec, layout: ClaimLayout, claimed: Sequence[ClaimedKey],
                  hook: Hook = no_hook, fence: Callable[[], None] = no_fence
                  ) -> CompactResult:
    """Write the claimed objects' valid records as Parquet under the target prefix.

    First removes what an earlier attempt of this claim, or the stale claims taken
    over, left behind; then stages, classifies and publishes. Keys are not marked
    here: the caller records ``succeeded`` and ``quarantined`` afterwards. ``hook`` is
    called at each step (see :data:`Hook`); production passes nothing. ``fence`` is
    called immediately before publishing and raises if the claim is no longer this
    run's: then nothing is published and the staging is removed.
    """
    result = CompactResult(bytes_in=sum(c.size or 0 for c in claimed))
    with _timed(result, "clean"):
        for token in sorted({c.previous_run_id for c in claimed if c.previous_run_id}
                            | {layout.token}):
            output.clean_claim(layout.for_token(token))
            if layout.scope:
                output.clean_claim(layout.for_token(token).unscoped())
    keys = []
    for c in claimed:
        if c.size == 0:
            result.quarantined[c.key] = "empty file: 0 bytes"
        else:
            keys.append(c.key)
    if not keys:
        return result
    with duck.spill_folder() as temp_dir:
        con = duck.connect(spec.ram_limit, temp_dir, [spec.raw, spec.lake])
        try:
            batch = _Batch(con, spec, layout)
            staged = _stage_isolating(batch, keys, result)
            with _timed(result, "count"):
                valid = _classify(batch, keys, staged, result)
            hook("after_stage")
            with _timed(result, "fence"):
                try:
                    fence()
                except BaseException:
                    output.drop_staging(layout)
                    raise
            with _timed(result, "publish"):
                published = output.publish(layout, [f.url for f in valid],
                                           lambda: hook("mid_publish"))
            result.files = [layout.lake.url(k) for k in published]
            # The moves keep every byte: the sizes are the ones the COPY reported.
            result.bytes_out = sum(f.size for f in valid)
            hook("after_publish")
        finally:
            con.close()
    return result
