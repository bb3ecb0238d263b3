"""Readings: one row per device and sample, validated with the quality core, then stored.

A reading carries the scheduled ``capture_dt`` (so a repeated sample hits the same key),
one column per tag, and ``missing_tags`` (tags whose read failed). The pandera schema is
built from the register map: every numeric tag column must be a finite number inside
the tag's valid range, and no tag may be missing.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pandera.pandas as pa

from shopfloor.modbus.batch import Batch, batch_of, tag_bounds
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.decoding import RequestDecoder
from shopfloor.modbus.planning import ReadRequest
from shopfloor.modbus.tags import TagSpec

KEY_COLUMNS = ("loc_id", "capture_dt")
# The version of the reading rules below (what reading_schema checks, how reasons are
# named), written on every landed line. Bump it when the rules change, so a reader of
# raw data knows which rules gave a line its verdict. A device's limits (its register
# map) are configuration, not rules: a changed limit is applied by ``reprocess``.
RULES_VERSION = 1


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
        lo, hi = tag_bounds(tag)
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


def _number(value: object) -> float:
    """A numeric tag's value as a float; ``None`` or a non-number that slipped in is NaN
    (a non-finite number fails the schema either way)."""
    try:
        return math.nan if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def readings_batch(cfg: DeviceConfig, readings: Sequence[Reading]) -> Batch:
    """The batch of already decoded readings (a missing tag is NaN/None there and named
    in ``missing``)."""
    names = [t.name for t in cfg.tags]
    columns: dict[str, object] = {}
    for t in cfg.tags:
        values = [r.values.get(t.name) for r in readings]
        columns[t.column] = [_number(v) for v in values] if t.is_numeric else values
    missing = ["" if len(r.values) >= len(names) else
               ",".join(n for n in names if n not in r.values) for r in readings]
    return batch_of(cfg, [r.capture_dt for r in readings], columns, missing)


def decode_batch(cfg: DeviceConfig, plan: Sequence[ReadRequest],
                 samples: Sequence[RawSample]) -> Batch:
    """Raw samples decoded read by read with numpy over the whole batch (a read that
    failed in a sample leaves its tags NaN/None there and named in ``missing``)."""
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
    return batch_of(cfg, [s.capture_dt for s in samples], columns,
                    [",".join(m) for m in missing])


def landed_prefix(cfg: DeviceConfig) -> str:
    """The device's folder in the raw-logs storage: ``dstrct_code=<code>/<device>/``.

    The district comes first, hive style, so the key registry reads it from the key
    (``shopfloor.compaction.keys``) and registration needs no parameter.
    """
    return f"dstrct_code={cfg.district}/{cfg.name}/"


def json_objects(batch: Batch, name: str,
                 reasons: Sequence[Sequence[Mapping[str, object]]] | None = None
                 ) -> dict[str, bytes]:
    """JSON-lines objects for the raw-logs storage, keyed
    ``dstrct_code=<code>/<device>/<YYYYMMDDHH>/<name>.json`` (see :meth:`Batch.json_objects`),
    every sample with its verdict under :data:`RULES_VERSION` (``reasons``: one list per
    sample, see :func:`shopfloor.modbus.landed.landed_reasons`; ``None``: all valid).
    """
    return batch.json_objects(landed_prefix(batch.cfg), name, reasons, RULES_VERSION)


def sample_time(anchor: float, k: int, interval: float) -> datetime:
    """Scheduled time of sample ``k`` (UTC, whole milliseconds), the row's ``capture_dt``."""
    ms = round((anchor + k * interval) * 1000)
    return datetime.fromtimestamp(ms / 1000, UTC)
