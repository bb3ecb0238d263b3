"""A batch of one device's samples as arrays: what the capture loop hands to its sink.

Numeric tags are one float matrix (a failed read leaves NaN and names its tags in
``missing``), text tags are object arrays. A clean batch goes from here to database rows
and JSON lines without a pandas frame: building a 60-column frame costs about 0.5 ms
per batch however few samples it holds, more than an hour's 12-sample batch takes to
decode (benchmarks/README.md, ``--hour``). Frames are built only for rows that need
pandera's verdict, or for callers that ask.
"""

import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.tags import TagSpec

MEASURE_COLUMNS = ("temperature", "humidity", "pcv_temperature")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def tag_bounds(tag: TagSpec) -> tuple[float, float]:
    """A tag's valid range, infinite where unbounded."""
    lo = -math.inf if tag.min_value is None else tag.min_value
    hi = math.inf if tag.max_value is None else tag.max_value
    return lo, hi


def _bounds(tags: Sequence[TagSpec]) -> np.ndarray:
    """``[[lo, hi], ...]`` per numeric tag, in map order."""
    return np.array([tag_bounds(t) for t in tags if t.is_numeric], dtype=float).reshape(-1, 2)


def landed_line(record: Mapping[str, object], reasons: Sequence[Mapping[str, object]],
                rules_version: int) -> str:
    """One landed JSON line: the record as it arrived plus its verdict, keys sorted (the
    same record and verdict always give the same bytes)."""
    obj = {**record, "verdict": "rejected" if reasons else "valid",
           "reasons": [dict(r) for r in reasons], "rules_version": rules_version}
    return json.dumps(obj, sort_keys=True, allow_nan=False)


def _csv_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def epoch_ms(dt: datetime) -> int:
    """Whole epoch milliseconds of an aware datetime, in integer arithmetic."""
    return (dt - _EPOCH) // _MS


@dataclass(frozen=True)
class Batch:
    """Samples of one device: times, the numeric matrix, text columns, missing tags."""

    cfg: DeviceConfig
    capture_dts: list[datetime]
    numeric: list[str]  # the matrix's columns: numeric tag columns, in map order
    matrix: np.ndarray  # (samples, len(numeric)) float64
    text: dict[str, np.ndarray]  # text tag column -> object array
    missing: list[str]  # per sample: comma-joined names of tags whose read failed

    def __len__(self) -> int:
        return len(self.capture_dts)

    def suspect(self) -> np.ndarray:
        """Rows that can fail the reading schema (``readings.reading_schema``): a missing
        tag, a non-finite number, a value outside its tag's range. Vectorised; only these
        rows go through pandera, which gives the reasons (a unit test keeps both in step).
        """
        bad = np.fromiter((bool(m) for m in self.missing), bool, len(self))
        if not self.numeric:
            return bad
        bounds = _bounds(self.cfg.tags)
        with np.errstate(invalid="ignore"):
            out = (~np.isfinite(self.matrix) | (self.matrix < bounds[:, 0])
                   | (self.matrix > bounds[:, 1]))
        return bad | out.any(axis=1)

    def no_answer(self) -> np.ndarray:
        """Samples the device answered no read of (every tag missing): not readings, only
        bad points (``capture_device(no_answer=True)``, docs/tags.md)."""
        every = len(self.cfg.tags)
        return np.fromiter((bool(m) and m.count(",") + 1 >= every for m in self.missing),
                           bool, len(self))

    def take(self, mask: np.ndarray) -> "Batch":
        """The rows where ``mask`` is true (or the rows at the given positions)."""
        index = np.flatnonzero(mask) if mask.dtype == bool else mask
        return Batch(self.cfg, [self.capture_dts[i] for i in index], self.numeric,
                     self.matrix[index], {c: v[index] for c, v in self.text.items()},
                     [self.missing[i] for i in index])

    def frame(self) -> pd.DataFrame:
        """One row per sample: ``loc_id``, ``capture_dt``, ``device``, a column per tag
        (numeric tags as one float block), ``missing_tags``."""
        n = len(self)
        keys = pd.DataFrame({"loc_id": np.full(n, self.cfg.loc_id, dtype=object),
                             "capture_dt": pd.to_datetime(self.capture_dts, utc=True),
                             "device": np.full(n, self.cfg.name, dtype=object)})
        rest = pd.DataFrame({**self.text, "missing_tags": np.array(self.missing, dtype=object)})
        return pd.concat([keys, pd.DataFrame(self.matrix, columns=self.numeric), rest],
                         axis=1, copy=False)

    def _records(self) -> Iterator[tuple[datetime, dict[str, object]]]:
        """``(capture_dt, {column: value})`` per sample, tag columns in map order, NaN
        as ``None``."""
        rows = self.matrix.tolist()
        text = {c: v.tolist() for c, v in self.text.items()}
        order = [t.column for t in self.cfg.tags]
        for i, dt in enumerate(self.capture_dts):
            values: dict[str, object] = {
                c: (None if v != v or v in (math.inf, -math.inf) else v)  # NaN/inf: null
                for c, v in zip(self.numeric, rows[i], strict=True)}
            values.update({c: v[i] for c, v in text.items()})
            yield dt, {c: values[c] for c in order if c in values}

    def raw_rows(self, ingested_at: datetime | None) -> list[dict[str, object]]:
        """Rows for ``temperature_raw`` (measure columns only; ``ingested_at`` left out
        when ``None``, for raw tables without that column)."""
        rows = []
        for dt, values in self._records():
            row: dict[str, object] = {"loc_id": self.cfg.loc_id, "capture_dt": dt,
                                      "device": self.cfg.name}
            if ingested_at is not None:
                row["ingested_at"] = ingested_at
            for c in MEASURE_COLUMNS:
                v = values.get(c)
                row[c] = None if v is None else float(v)  # type: ignore[arg-type]
            rows.append(row)
        return rows

    def raw_csv(self, ingested_at: datetime | None) -> tuple[list[str], str]:
        """The rows of :meth:`raw_rows` as PostgreSQL CSV for ``COPY``, built column by
        column: ``(columns, csv)``. Times are naive UTC (as ``UtcDateTime`` stores
        them), NaN and infinities NULL, floats exact (``repr``)."""
        n = len(self)
        ms = np.fromiter((epoch_ms(dt) for dt in self.capture_dts), np.int64, n)
        cols: dict[str, list[str]] = {
            "loc_id": [_csv_text(self.cfg.loc_id)] * n,
            "capture_dt": np.datetime_as_string(ms.astype("datetime64[ms]")).tolist(),
            "device": [_csv_text(self.cfg.name)] * n,
        }
        if ingested_at is not None:
            naive = ingested_at.astimezone(UTC).replace(tzinfo=None).isoformat()
            cols["ingested_at"] = [naive] * n
        for c in MEASURE_COLUMNS:
            if c in self.numeric:
                values = self.matrix[:, self.numeric.index(c)].tolist()
                cols[c] = [repr(v) if math.isfinite(v) else "" for v in values]
            else:
                cols[c] = [""] * n
        lines = [",".join(row) for row in zip(*cols.values(), strict=True)]
        return list(cols), "\n".join(lines) + ("\n" if lines else "")

    def json_objects(self, prefix: str, name: str,
                     reasons: Sequence[Sequence[Mapping[str, object]]] | None = None,
                     rules_version: int = 0) -> dict[str, bytes]:
        """JSON-lines objects keyed ``<prefix><YYYYMMDDHH>/<name>.json``, one per UTC
        hour of ``capture_dt``; each line carries ``heartbeat`` (epoch ms),
        ``dstrct_code``, ``device``, ``loc_id``, ``capture_dt`` (ISO, UTC), every tag
        column (NaN as null), and the verdict: ``verdict`` (``valid`` when the sample's
        ``reasons`` are empty, else ``rejected``), ``reasons`` and ``rules_version``.
        ``reasons`` holds one list per sample (``None``: every sample valid)."""
        cfg = self.cfg
        lines: dict[str, list[str]] = defaultdict(list)
        for i, (dt, values) in enumerate(self._records()):
            why = list(reasons[i]) if reasons is not None else []
            obj = {"heartbeat": epoch_ms(dt), "dstrct_code": cfg.district,
                   "device": cfg.name, "loc_id": cfg.loc_id,
                   "capture_dt": dt.isoformat().replace("+00:00", "Z"), **values}
            lines[f"{prefix}{dt.strftime('%Y%m%d%H')}/{name}.json"].append(
                landed_line(obj, why, rules_version))
        return {k: ("\n".join(v) + "\n").encode() for k, v in lines.items()}

def batch_of(cfg: DeviceConfig, capture_dts: Sequence[datetime],
             columns: dict[str, object], missing: list[str]) -> Batch:
    """A batch from decoded columns (``column -> values per sample``)."""
    n = len(capture_dts)
    numeric = [t.column for t in cfg.tags if t.is_numeric and t.column in columns]
    matrix = np.empty((n, len(numeric)))
    for j, column in enumerate(numeric):
        matrix[:, j] = columns[column]  # type: ignore[index]
    text = {t.column: np.asarray(columns[t.column], dtype=object) for t in cfg.tags
            if not t.is_numeric and t.column in columns}
    return Batch(cfg, list(capture_dts), numeric, matrix, text, missing)
