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
from sqlalchemy import Connection, insert

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
    run_id: str | None,
) -> int:
    """Insert quarantined rows in one executemany; returns how many were written."""
    records = quarantine_records(rows, source, run_id)
    if records:
        conn.execute(insert(tables.quarantine), records)
    return len(records)
