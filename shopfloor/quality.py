"""The quality core: split a batch into valid and quarantined rows, score it, store rejects.

Every flow validates with a pandera schema through :func:`split_valid`, writes the
rejects with :func:`write_quarantine` and reports :func:`quality_score`.
"""

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from sqlalchemy import Connection, delete, insert

from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow


@dataclass(frozen=True)
class Reason:
    """Why a row was rejected: the column, the failed check and the offending value."""

    column: str | None
    check: str
    value: Any

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "check": self.check, "value": _json_safe(self.value)}


@dataclass
class QuarantinedRow:
    """One rejected row and every reason it failed; ``source_key`` and ``source_line``
    (1-based) name the landed object and line it came from, when it came from one."""

    record: dict[str, Any]
    reasons: list[Reason] = field(default_factory=list)
    source_key: str | None = None
    source_line: int | None = None


@dataclass
class QualityResult:
    """The valid rows (a frame, schema-coerced) and the quarantined ones."""

    valid: pd.DataFrame
    quarantined: list[QuarantinedRow]


@dataclass(frozen=True)
class QualityScore:
    """Share of rows passing, per dimension, in [0, 1]; ``overall`` is their mean."""

    rows: int
    completeness: float
    validity: float
    uniqueness: float
    timeliness: float

    @property
    def overall(self) -> float:
        return (self.completeness + self.validity + self.uniqueness + self.timeliness) / 4


def _json_safe(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/inf are not JSON
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _reasons_by_row(failure_cases: pd.DataFrame) -> dict[Any, list[Reason]]:
    reasons: dict[Any, list[Reason]] = defaultdict(list)
    for case in failure_cases.itertuples(index=False):
        idx = case.index
        if idx is None or (isinstance(idx, float) and math.isnan(idx)):
            continue  # schema-level failure (e.g. a missing column): handled by the caller
        column = None if pd.isna(case.column) else str(case.column)
        reasons[idx].append(Reason(column, str(case.check), case.failure_case))
    return reasons


def split_valid(df: pd.DataFrame, schema: pa.DataFrameSchema) -> QualityResult:
    """Validate ``df`` lazily; return the passing rows and every failing row with its reasons.

    A schema-level failure that is not tied to a row (a missing required column, a
    column of the wrong dtype that cannot be coerced) rejects the whole batch, with the
    reason on every row, so nothing unvalidated goes through.
    """
    if df.empty:
        return QualityResult(df.copy(), [])
    try:
        return QualityResult(schema.validate(df, lazy=True), [])
    except SchemaErrors as err:
        cases = err.failure_cases
    by_row = _reasons_by_row(cases)
    batch_wide = [
        Reason(None if pd.isna(c.column) else str(c.column), str(c.check), c.failure_case)
        for c in cases.itertuples(index=False)
        if c.index is None or (isinstance(c.index, float) and math.isnan(c.index))
    ]
    bad_index = df.index if batch_wide else df.index[df.index.isin(list(by_row))]
    quarantined = [
        QuarantinedRow(
            {k: _json_safe(v) for k, v in df.loc[i].to_dict().items()},
            by_row.get(i, []) + batch_wide,
        )
        for i in bad_index
    ]
    good = df.drop(index=bad_index)
    valid = schema.validate(good) if not good.empty else good
    return QualityResult(valid, quarantined)


def quality_score(
    df: pd.DataFrame,
    result: QualityResult,
    required_columns: Sequence[str] = (),
    key_columns: Sequence[str] = (),
    timestamp_column: str | None = None,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> QualityScore:
    """Score a batch: completeness (required columns non-null), validity (rows passing the
    schema), uniqueness (rows not duplicating an earlier key) and timeliness (rows no older
    than ``max_age``). Dimensions that are not configured score 1.0.
    """
    n = len(df)
    if n == 0:
        return QualityScore(0, 1.0, 1.0, 1.0, 1.0)
    present = [c for c in required_columns if c in df.columns]
    complete = 1.0
    if required_columns:
        ok = df[present].notna().all(axis=1).sum() if present else 0
        complete = float(ok) / n if len(present) == len(required_columns) else 0.0
    valid = float(n - len(result.quarantined)) / n
    unique = 1.0
    if key_columns and all(c in df.columns for c in key_columns):
        unique = float((~df.duplicated(subset=list(key_columns))).sum()) / n
    timely = 1.0
    if timestamp_column and max_age is not None and timestamp_column in df.columns:
        ts = pd.to_datetime(df[timestamp_column], utc=True, errors="coerce")
        cutoff = pd.Timestamp(now or utcnow()) - max_age
        timely = float((ts >= cutoff).sum()) / n
    return QualityScore(n, complete, valid, unique, timely)


def quarantine_records(
    rows: Sequence[QuarantinedRow], source: str, run_id: str | None
) -> list[dict[str, Any]]:
    """Rows for the ``quarantine`` table: record and reasons as JSON text.

    ``source_key``/``source_line`` are set only when some row has them, so a table that
    predates those columns (before ``shopfloor db init --upgrade``) still takes rows
    that do not come from a landed object.
    """
    now = utcnow()
    located = any(r.source_key is not None for r in rows)
    return [
        {
            "source": source,
            "record": json.dumps(r.record, default=str, sort_keys=True),
            "reasons": json.dumps([x.as_dict() for x in r.reasons], default=str),
            "run_id": run_id,
            "quarantined_at": now,
            **({"source_key": r.source_key, "source_line": r.source_line} if located else {}),
        }
        for r in rows
    ]


def write_quarantine(
    conn: Connection, tables: Tables, rows: Sequence[QuarantinedRow], source: str,
    run_id: str | None, replacing_since: datetime | None = None,
) -> int:
    """Insert quarantined rows in one executemany; returns how many were written.

    With ``replacing_since``, rows of ``source`` quarantined since then with the same
    record are deleted first (same transaction): a replay of the same readings (a
    forwarder killed after its write and before its cursor moved) replaces instead of
    adding. The time bounds the scan to recent rows (index on source, quarantined_at).
    """
    records = quarantine_records(rows, source, run_id)
    if records and replacing_since is not None:
        q = tables.quarantine
        texts = sorted({r["record"] for r in records})
        for i in range(0, len(texts), 500):  # below every dialect's parameter limit
            conn.execute(delete(q).where(q.c.source == source,
                                         q.c.quarantined_at >= replacing_since,
                                         q.c.record.in_(texts[i:i + 500])))
    if records:
        conn.execute(insert(tables.quarantine), records)
    return len(records)


# Bumped whenever a validation rule of any flow changes, so a quality row says which
# rules judged its batch (stored in ``quality_score.rule_version``).
RULE_VERSION = "2026.12.1"


@dataclass
class BatchCounts:
    """What a batch held, the inputs of :func:`score_counts` (they add up over batches).

    ``expected``: rows (samples, records, hourly groups) the batch should have held,
    ``None`` when unknown; ``rows_timely``: rows that arrived within the lateness bound,
    ``None`` when arrival is not measured by the flow.
    """

    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    expected: int | None = None
    rows_timely: int | None = None

    def __add__(self, other: "BatchCounts") -> "BatchCounts":
        def opt(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)
        return BatchCounts(
            self.rows_in + other.rows_in, self.rows_valid + other.rows_valid,
            self.rows_quarantined + other.rows_quarantined,
            self.rows_duplicate + other.rows_duplicate,
            opt(self.expected, other.expected), opt(self.rows_timely, other.rows_timely))


def _share(part: int, whole: int) -> float:
    return 1.0 if whole <= 0 else min(1.0, max(0.0, part / whole))


def completeness(rows_in: int, expected: int | None) -> float:
    """Rows received against rows expected, at most 1 (``None`` expected: 1.0)."""
    if expected is None:
        return 1.0
    if expected <= 0:
        return 1.0
    return _share(rows_in, expected)


def score_counts(counts: BatchCounts) -> QualityScore:
    """The four dimensions of a batch from its counts; each in [0, 1].

    completeness = rows in / expected; validity = valid / in; uniqueness =
    1 - duplicates / in; timeliness = timely / in. A dimension the flow does not
    measure (no ``expected``, no ``rows_timely``) and an empty batch score 1.0, as in
    :func:`quality_score`.
    """
    n = counts.rows_in
    timely = 1.0 if counts.rows_timely is None else _share(counts.rows_timely, n)
    return QualityScore(
        n, completeness(n, counts.expected), _share(counts.rows_valid, n),
        1.0 - _share(counts.rows_duplicate, n) if n else 1.0, timely)


def timely_count(arrived: datetime, times: Sequence[datetime], bound: timedelta) -> int:
    """How many rows of ``times`` (their capture time) arrived within ``bound`` of it,
    when the batch arrived at ``arrived``."""
    cutoff = arrived - bound
    return sum(1 for t in times if t >= cutoff)


@dataclass(frozen=True)
class Subject:
    """What a quality row describes: the flow, a device / object key / window / month,
    and the time span it covers when it has one."""

    flow: str
    subject: str
    window_start: datetime | None = None
    window_end: datetime | None = None


MAX_SUBJECT = 255


def quality_row(subject: Subject, counts: BatchCounts, run_id: str | None,
                recorded_at: datetime | None = None,
                rule_version: str = RULE_VERSION) -> dict[str, Any]:
    """A ``quality_score`` row: the scores of ``counts`` and the counts themselves."""
    score = score_counts(counts)
    name = subject.subject
    if len(name) > MAX_SUBJECT:  # object keys reach 1024: keep the end, which is unique
        name = "..." + name[-(MAX_SUBJECT - 3):]
    return {
        "flow": subject.flow, "subject": name,
        "window_start": subject.window_start, "window_end": subject.window_end,
        "completeness": score.completeness, "validity": score.validity,
        "uniqueness": score.uniqueness, "timeliness": score.timeliness,
        "overall": score.overall,
        "rows_in": counts.rows_in, "rows_valid": counts.rows_valid,
        "rows_quarantined": counts.rows_quarantined, "rows_duplicate": counts.rows_duplicate,
        "expected": counts.expected, "rule_version": rule_version, "run_id": run_id,
        "recorded_at": recorded_at or utcnow(),
    }


def write_quality(conn: Connection, tables: Tables, rows: Sequence[dict[str, Any]]) -> int:
    """Insert quality rows (in the caller's transaction); returns how many."""
    if rows:
        conn.execute(insert(tables.quality_score), list(rows))
    return len(rows)


def put_quality(conn: Connection, tables: Tables, row: dict[str, Any],
                row_id: int | None) -> int:
    """Insert ``row`` (``row_id`` None) or replace the row ``row_id`` with it; returns
    its id. A run that writes many batches keeps one row that always matches what its
    committed batches hold."""
    q = tables.quality_score
    if row_id is None:
        return int(conn.execute(insert(q).values(**row)).inserted_primary_key[0])
    conn.execute(q.update().where(q.c.id == row_id).values(**row))
    return row_id


SCORE_COLUMNS = ("completeness", "validity", "uniqueness", "timeliness", "overall")


def artifact_scores(row: dict[str, Any] | None) -> dict[str, Any]:
    """The scores of a quality row for a table artifact (rounded, prefixed ``q_``)."""
    if row is None:
        return {f"q_{c}": None for c in SCORE_COLUMNS}
    return {f"q_{c}": round(float(row[c]), 4) for c in SCORE_COLUMNS}


def worst(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The quality row with the lowest ``overall`` (``None`` for none)."""
    return min(rows, key=lambda r: r["overall"]) if rows else None


def combined(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The scores of some quality rows taken together (their counts summed), for a run's
    artifact; ``None`` for none."""
    if not rows:
        return None
    total = BatchCounts()
    for r in rows:
        total = total + BatchCounts(r["rows_in"], r["rows_valid"], r["rows_quarantined"],
                                    r["rows_duplicate"], r["expected"])
    score = score_counts(total)
    return {"completeness": score.completeness, "validity": score.validity,
            "uniqueness": score.uniqueness, "timeliness": score.timeliness,
            "overall": score.overall}
