"""Master data sync: locations and thresholds from the source to the target database."""

from datetime import datetime
from typing import Any

import pandas as pd
import pandera.pandas as pa
from sqlalchemy import Connection, select, update

from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.errors import ShopfloorError
from shopfloor.outcome import COMPLETED, Verdict
from shopfloor.quality import QualityResult, split_valid

THRESHOLDS = tuple(f"{m}_{b}" for m in ("temperature", "humidity", "pcv_temperature")
                   for b in ("min", "max"))
COLUMNS = ("loc_id", "name", "site", *THRESHOLDS, "active")


def _min_not_above_max(df: pd.DataFrame) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for m in ("temperature", "humidity", "pcv_temperature"):
        lo, hi = df[f"{m}_min"], df[f"{m}_max"]
        ok &= lo.isna() | hi.isna() | (lo <= hi)
    return ok


LOCATION_SCHEMA = pa.DataFrameSchema(
    {
        "loc_id": pa.Column(str, pa.Check.str_matches(r"^\S{1,32}$"), nullable=False),
        "name": pa.Column(object, nullable=True),
        "site": pa.Column(object, nullable=True),
        **{c: pa.Column(float, nullable=True, coerce=True) for c in THRESHOLDS},
        "active": pa.Column(bool, nullable=False, coerce=True),
    },
    checks=[pa.Check(_min_not_above_max, name="threshold_min_not_above_max")],
    unique=["loc_id"],
)


def read_source_locations(conn: Connection, tables: Tables) -> pd.DataFrame:
    """Every location of the source, as a frame with the columns of :data:`COLUMNS`."""
    loc = tables.location
    rows = conn.execute(select(*(loc.c[c] for c in COLUMNS))).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=list(COLUMNS))


def validate_locations(df: pd.DataFrame) -> QualityResult:
    """Split source locations into valid ones and quarantined ones with reasons."""
    if not df.empty:
        df = df.astype({c: "float64" for c in THRESHOLDS})
        df["active"] = df["active"].fillna(True)
    return split_valid(df, LOCATION_SCHEMA)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in record.items()}


def _same(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return old is not None and all(old[c] == new[c] for c in COLUMNS)


def apply_locations(conn: Connection, tables: Tables, valid: pd.DataFrame,
                    source_ids: set[str], now: datetime) -> tuple[int, int, list[str]]:
    """Upsert changed locations; mark target locations absent from the source inactive.

    ``source_ids`` holds every loc_id of the source, quarantined ones included: a
    location with a bad row keeps its last good values rather than being deactivated.

    Raises:
        ShopfloorError: if the source has no location at all while the target has active
            ones (nothing is changed).

    Returns:
        (rows upserted, rows unchanged, loc_ids deactivated).
    """
    loc = tables.location
    current = {r["loc_id"]: dict(r) for r in conn.execute(select(loc)).mappings()}
    active = [k for k, r in current.items() if r["active"]]
    if not source_ids and active:
        # An empty master table is far more often a wrong block or a failed load than a
        # plant without locations: deactivating every threshold would silence all alerts.
        raise ShopfloorError(
            f"the source has no locations: nothing synced, the target's {len(active)} active "
            "location(s) kept (load them into the source, e.g. `shopfloor hourly "
            "load-locations FILE`)")
    records = [_clean(r) for r in valid.to_dict("records")]
    for r in records:
        r["active"] = bool(r["active"])
    changed = [dict(r, updated_at=now) for r in records if not _same(current.get(r["loc_id"]), r)]
    upsert(conn, loc, changed, ["loc_id"])
    gone = sorted(k for k, r in current.items() if k not in source_ids and r["active"])
    if gone:  # never delete: hourly history still refers to them
        conn.execute(update(loc).where(loc.c.loc_id.in_(gone)).values(active=False,
                                                                         updated_at=now))
    return len(changed), len(records) - len(changed), gone


def sync_row(result: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A master data sync's artifact row: its counts, the deactivated locations counted."""
    row = {k: v for k, v in result.items() if k != "deactivated"}
    row["deactivated"] = len(result["deactivated"])
    row["duration_s"] = round(seconds, 2)
    return row


def sync_verdict(result: dict[str, Any]) -> Verdict:
    """Idle when the source has no location (an empty source with active locations on
    the target is refused before anything is written), Degraded when some were
    quarantined (they keep their last good values)."""
    if not result["source_rows"]:
        return Verdict("idle", "the source has no locations")
    if result["quarantined"]:
        return Verdict("degraded", f"{result['quarantined']} of {result['source_rows']} "
                       "source locations quarantined (they keep their last good values)")
    return COMPLETED
