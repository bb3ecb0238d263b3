"""Readings: one row per device and sample, validated with the quality core, then stored.

A reading carries the scheduled ``capture_dt`` (so a repeated sample hits the same key),
one column per tag, and ``missing_tags`` (tags whose read failed). The pandera schema is
built from the register map: every numeric tag column must be a finite number inside
the tag's valid range, and no tag may be missing.
"""

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pandera.pandas as pa

from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.decoding import RequestDecoder
from shopfloor.modbus.planning import ReadRequest
from shopfloor.modbus.tags import TagSpec

MEASURE_COLUMNS = ("temperature", "humidity", "pcv_temperature")
KEY_COLUMNS = ("loc_id", "capture_dt")


@dataclass(frozen=True)
class Reading:
    """The decoded values of one sample of one device."""

    capture_dt: datetime
    values: dict[str, object]


@dataclass(frozen=True)
class RawSample:
    """One sample as read: the words (or bits) of each planned read that answered,
    by the read's index in the plan. Decoded a batch at a time by :func:`decode_batch`."""

    capture_dt: datetime
    payloads: dict[int, list[int] | list[bool]]


def _finite(series: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(series, errors="coerce")
    return pd.Series(np.isfinite(numbers.to_numpy(dtype=float)), index=series.index)


def _tag_column(tag: TagSpec) -> pa.Column:
    if not tag.is_numeric:
        return pa.Column(str, nullable=True)
    checks = [pa.Check(_finite, name="finite_number", ignore_na=False)]
    if tag.min_value is not None or tag.max_value is not None:
        lo, hi = _bounds(tag)
        checks.append(pa.Check.in_range(lo, hi, name=f"range[{lo},{hi}]"))
    return pa.Column(float, checks=checks, nullable=True, coerce=True)


def reading_schema(tags: Sequence[TagSpec]) -> pa.DataFrameSchema:
    """The pandera schema a device's readings must pass."""
    columns = {
        "loc_id": pa.Column(str),
        "capture_dt": pa.Column(pd.DatetimeTZDtype(tz="UTC")),
        "device": pa.Column(str),
        "missing_tags": pa.Column(str, pa.Check.str_length(max_value=0, name="missing_tags")),
    }
    columns.update({t.column: _tag_column(t) for t in tags})
    return pa.DataFrameSchema(columns, strict=False)


def _bounds(tag: TagSpec) -> tuple[float, float]:
    lo = -math.inf if tag.min_value is None else tag.min_value
    hi = math.inf if tag.max_value is None else tag.max_value
    return lo, hi


def suspect_rows(frame: pd.DataFrame, tags: Sequence[TagSpec]) -> np.ndarray:
    """Rows that can fail :func:`reading_schema`, found with vectorised numpy.

    The same rules as the schema (a missing tag, a non-finite number, a value out of
    its tag's range), over the whole batch at once. Only these rows go through pandera,
    which then gives the reasons: pandera costs about a millisecond per column per
    batch, more than the reads themselves for wide maps (see benchmarks/README.md).
    """
    bad = np.fromiter((bool(m) for m in frame["missing_tags"]), bool, len(frame))
    numeric = [t for t in tags if t.is_numeric]
    if not numeric:
        return bad
    columns = [t.column for t in numeric]
    # a batch's numeric tags are one contiguous float block (see _frame): take it as a
    # slice when the columns are in place, which costs far less than a column lookup
    start = frame.columns.get_loc(columns[0]) if columns[0] in frame.columns else None
    if isinstance(start, int) and list(frame.columns[start:start + len(columns)]) == columns:
        values = frame.iloc[:, start:start + len(columns)]
    else:
        values = frame[columns]
    try:
        matrix = values.to_numpy(dtype=float)  # None -> NaN
    except (TypeError, ValueError):  # a non-number slipped in: it is suspect too
        matrix = values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bounds = np.array([_bounds(t) for t in numeric])
    with np.errstate(invalid="ignore"):
        out = ~np.isfinite(matrix) | (matrix < bounds[:, 0]) | (matrix > bounds[:, 1])
    return bad | out.any(axis=1)


def readings_frame(cfg: DeviceConfig, readings: Sequence[Reading]) -> pd.DataFrame:
    """One row per reading: keys, device, a column per tag, and the missing tag names.

    Numeric tags come in as one float matrix (a missing tag is NaN there and named in
    ``missing_tags``), which is much cheaper than letting pandas infer 60 columns.
    """
    numeric = [t for t in cfg.tags if t.is_numeric]
    names = [t.name for t in cfg.tags]
    nan = math.nan
    matrix = np.array([[r.values.get(t.name, nan) for t in numeric] for r in readings],
                      dtype=float).reshape(len(readings), len(numeric))
    frame = pd.DataFrame(matrix, columns=[t.column for t in numeric])
    for t in cfg.tags:
        if not t.is_numeric:
            frame[t.column] = [r.values.get(t.name) for r in readings]
    frame.insert(0, "loc_id", cfg.loc_id)
    frame.insert(1, "capture_dt", pd.to_datetime([r.capture_dt for r in readings], utc=True))
    frame.insert(2, "device", cfg.name)
    frame["missing_tags"] = [
        "" if len(r.values) >= len(names) else ",".join(n for n in names if n not in r.values)
        for r in readings]
    return frame


def _frame(cfg: DeviceConfig, capture_dts: list[datetime], columns: dict[str, object],
           missing: list[str]) -> pd.DataFrame:
    # Numeric tags as one float matrix (one pandas block) and the rest beside it: a
    # frame built column by column costs about 1 ms per batch for 60 tags, more than
    # an hour's 12-sample batch takes to read (benchmarks/README.md, --hour).
    n = len(capture_dts)
    numeric = [t.column for t in cfg.tags if t.is_numeric and t.column in columns]
    matrix = np.empty((n, len(numeric)))
    for j, column in enumerate(numeric):
        matrix[:, j] = columns[column]  # type: ignore[index]
    parts = [
        pd.DataFrame({"loc_id": np.full(n, cfg.loc_id, dtype=object),
                      "capture_dt": pd.to_datetime(capture_dts, utc=True),
                      "device": np.full(n, cfg.name, dtype=object)}),
        pd.DataFrame(matrix, columns=numeric),
    ]
    text = {t.column: columns[t.column] for t in cfg.tags
            if not t.is_numeric and t.column in columns}
    parts.append(pd.DataFrame({**text, "missing_tags": np.array(missing, dtype=object)}))
    return pd.concat(parts, axis=1, copy=False)


def decode_batch(cfg: DeviceConfig, plan: Sequence[ReadRequest],
                 samples: Sequence[RawSample]) -> pd.DataFrame:
    """The frame of :func:`readings_frame` for raw samples, decoded read by read with
    numpy over the whole batch (a read that failed in a sample leaves its tags NaN/None
    there and named in ``missing_tags``)."""
    n = len(samples)
    columns: dict[str, object] = {}
    missing: list[list[str]] = [[] for _ in range(n)]
    for i, request in enumerate(plan):
        have = [k for k, s in enumerate(samples) if i in s.payloads]
        if len(have) < n:
            lost = [t.name for t in request.tags]
            for k in set(range(n)).difference(have):
                missing[k].extend(lost)
        if request.decoder is None:
            request.decoder = RequestDecoder(request.tags, request.address, request.count)
        decoded = request.decoder.batch([samples[k].payloads[i] for k in have])
        for tag in request.tags:
            values = decoded[tag.name]
            if len(have) == n:
                columns[tag.column] = values
                continue
            full = np.full(n, np.nan) if tag.is_numeric else np.full(n, None, dtype=object)
            full[have] = values
            columns[tag.column] = full
    ordered = {t.column: columns[t.column] for t in cfg.tags if t.column in columns}
    return _frame(cfg, [s.capture_dt for s in samples], ordered,
                  [",".join(m) for m in missing])


def raw_rows(valid: pd.DataFrame, ingested_at: datetime) -> list[dict[str, object]]:
    """Rows for ``temperature_raw`` from validated readings (measure columns only)."""
    present = [c for c in MEASURE_COLUMNS if c in valid.columns]
    rows = []
    for rec in valid.to_dict("records"):
        row = {"loc_id": rec["loc_id"], "capture_dt": rec["capture_dt"].to_pydatetime(),
               "device": rec["device"], "ingested_at": ingested_at}
        row.update({c: None if pd.isna(rec[c]) else float(rec[c]) for c in present})
        row.update({c: None for c in MEASURE_COLUMNS if c not in present})
        rows.append(row)
    return rows


def _json_value(value: object) -> object:
    if hasattr(value, "item"):
        value = value.item()  # numpy scalar
    return None if isinstance(value, float) and not math.isfinite(value) else value


def landed_prefix(cfg: DeviceConfig) -> str:
    """The device's folder in the raw-logs storage: ``dstrct_code=<code>/<device>/``.

    The district comes first, hive style, so the key registry reads it from the key
    (``shopfloor.compaction.keys``) and registration needs no parameter.
    """
    return f"dstrct_code={cfg.dstrct_code}/{cfg.name}/"


def json_objects(cfg: DeviceConfig, valid: pd.DataFrame, name: str) -> dict[str, bytes]:
    """JSON-lines objects for the raw-logs storage, keyed
    ``dstrct_code=<code>/<device>/<YYYYMMDDHH>/<name>.json``.

    One object per UTC hour of ``capture_dt``; each line carries ``heartbeat`` (epoch
    ms), ``dstrct_code``, ``device``, ``loc_id``, ``capture_dt`` (ISO, UTC) and every
    tag column.
    """
    prefix = landed_prefix(cfg)
    lines: dict[str, list[str]] = defaultdict(list)
    tag_columns = [t.column for t in cfg.tags]
    for rec in valid.to_dict("records"):
        ts: pd.Timestamp = rec["capture_dt"]
        obj = {"heartbeat": int(ts.value // 1_000_000), "dstrct_code": cfg.dstrct_code,
               "device": cfg.name, "loc_id": cfg.loc_id,
               "capture_dt": ts.isoformat().replace("+00:00", "Z")}
        obj.update({c: _json_value(rec[c]) for c in tag_columns})
        key = f"{prefix}{ts.strftime('%Y%m%d%H')}/{name}.json"
        lines[key].append(json.dumps(obj, sort_keys=True))
    return {k: ("\n".join(v) + "\n").encode() for k, v in lines.items()}


def sample_time(anchor: float, k: int, interval: float) -> datetime:
    """Scheduled time of sample ``k`` (UTC, whole milliseconds), the row's ``capture_dt``."""
    ms = round((anchor + k * interval) * 1000)
    return datetime.fromtimestamp(ms / 1000, UTC)
