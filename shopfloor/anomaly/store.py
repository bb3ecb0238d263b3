"""Hourly rows in, findings out: the ``anomaly`` table's reads and idempotent writes."""

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, and_, select

from shopfloor.aggregation.hours import ymd_hh
from shopfloor.anomaly.findings import Finding
from shopfloor.anomaly.grid import MEASURES
from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert

KEY = ("kind", "loc_id", "measure", "hour_start")


def read_hourly(conn: Connection, tables: Tables, first: int, last: int) -> pd.DataFrame:
    """Hourly rows of local hour indices ``first..last`` (a range of whole days is read;
    :func:`~shopfloor.anomaly.findings.detect` drops the hours outside)."""
    h = tables.temperature_hourly
    cols = [h.c.loc_id, h.c.ymd, h.c.hh, h.c.sample_count,
            *(h.c[f"{m}_avg"] for m in MEASURES)]
    stmt = select(*cols).where(h.c.ymd >= ymd_hh(first)[0], h.c.ymd <= ymd_hh(last)[0])
    rows = conn.execute(stmt).all()
    return pd.DataFrame(rows, columns=[c.name for c in cols])


def existing_keys(conn: Connection, tables: Tables, findings: Sequence[Finding]
                  ) -> set[tuple[str, str, str, datetime]]:
    """Keys of ``findings`` already in the table (one range query over their hours)."""
    if not findings:
        return set()
    a = tables.anomaly
    lo = min(f.hour_start for f in findings)
    hi = max(f.hour_start for f in findings)
    stmt = select(a.c.kind, a.c.loc_id, a.c.measure, a.c.hour_start).where(
        and_(a.c.hour_start >= lo, a.c.hour_start <= hi))
    return {tuple(r) for r in conn.execute(stmt)}


def insert_findings(conn: Connection, tables: Tables, findings: Sequence[Finding],
                    run_id: str | None, detected_at: datetime) -> list[Finding]:
    """Insert the findings not stored yet and return exactly those (the new ones).

    The stored keys are read first, so a rerun inserts and returns nothing; the insert
    itself also ignores a conflicting key (insert-or-ignore on ``uq_anomaly_finding``),
    so a finding written meanwhile by another run is not an error. Runs of one
    deployment never overlap (its concurrency limit), so what is returned was new.

    Args:
        conn: an open connection; the caller owns the transaction.
        tables: the tables.
        findings: the findings of a run.
        run_id: the flow run id stored with each new row.
        detected_at: the time stored with each new row.
    """
    stored = existing_keys(conn, tables, findings)
    new, seen = [], set(stored)
    for f in findings:
        if f.key not in seen:
            seen.add(f.key)
            new.append(f)
    upsert(conn, tables.anomaly, [f.row(run_id, detected_at) for f in new], list(KEY),
           update_columns=[])
    return new
