"""Landed raw data: every sample as it arrived, with its verdict, and the way back.

Capture lands each sample as one JSON line (:meth:`Batch.json_objects`) carrying
``verdict`` (``valid`` | ``rejected``), ``reasons`` (``{column, check, value}``, never NaN)
and ``rules_version``. ``reprocess`` reads those lines back into a :class:`Batch` under a
device's current register map and judges them again (:func:`landed_batch`), then
rewrites the same object with the new verdicts (:func:`rewritten_object`).
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.batch import Batch, landed_line
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.readings import Reading, readings_batch
from shopfloor.quality import QuarantinedRow

MISSING = "missing"
FINITE = "finite_number"  # the check readings.reading_schema names
VERDICT_FIELDS = ("verdict", "reasons", "rules_version")


@dataclass(frozen=True)
class LandedLine:
    """One line of a landed object: its 1-based line number and its record."""

    line: int
    record: dict[str, Any]


def _value(value: Any) -> Any:
    """A reason's value as JSON: numpy scalars unwrapped, NaN and infinities null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def landed_reasons(row: QuarantinedRow, missing: str, cfg: DeviceConfig) -> list[dict[str, Any]]:
    """The reasons of a rejected sample as landed: one ``missing`` reason per tag whose
    read failed (instead of pandera's ``missing_tags`` and the NaN it leaves), then every
    other failed check, sorted, values JSON-safe.

    A non-finite number keeps only its ``finite_number`` reason: it lands as null (JSON
    has no NaN or infinity), so a range check on it could not be judged again from the
    landed line, and a reprocess under the same rules must give the same line.
    """
    columns = {t.name: t.column for t in cfg.tags}
    lost = [columns.get(n, n) for n in missing.split(",") if n]
    out = [{"column": c, "check": MISSING, "value": None} for c in lost]
    not_finite = {r.column for r in row.reasons if r.check == FINITE}
    rest = {(r.column or "", r.check, json.dumps(_value(r.value), default=str)):
            {"column": r.column, "check": r.check, "value": _value(r.value)}
            for r in row.reasons if r.column != "missing_tags" and r.column not in lost
            and (r.column not in not_finite or r.check == FINITE)}
    return out + [rest[k] for k in sorted(rest)]


def parse_object(body: bytes, key: str) -> list[LandedLine]:
    """The records of a landed JSON-lines object, numbered from 1 (blank lines skipped,
    still counted).

    Raises:
        ShopfloorError: naming the key and line of a line that is not a JSON object.
    """
    out = []
    for n, text in enumerate(body.decode("utf-8").split("\n"), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise ShopfloorError(f"{key} line {n}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ShopfloorError(f"{key} line {n}: not a JSON object")
        out.append(LandedLine(n, record))
    return out


def _missing_columns(record: Mapping[str, Any]) -> set[str]:
    reasons = record.get("reasons") or []
    return {r.get("column") for r in reasons if isinstance(r, dict) and r.get("check") == MISSING}


def landed_batch(cfg: DeviceConfig, lines: Sequence[LandedLine]) -> Batch:
    """The samples of landed lines as a batch of ``cfg`` (its current register map).

    A tag the line does not hold, or whose landed reason says ``missing``, is missing
    (its read failed, or the map gained the tag after the line was landed). Times come
    from ``capture_dt``; other fields (device, loc_id) are those of ``cfg``.
    """
    readings = []
    for ln in lines:
        rec, lost = ln.record, _missing_columns(ln.record)
        values = {t.name: rec[t.column] for t in cfg.tags
                  if t.column in rec and t.column not in lost}
        readings.append(Reading(datetime.fromisoformat(str(rec["capture_dt"])), values))
    return readings_batch(cfg, readings)


def rewritten_object(lines: Sequence[LandedLine], reasons: Sequence[Sequence[Mapping[str, Any]]],
                     rules_version: int) -> bytes:
    """The object again: each record exactly as it arrived, with its new verdict (a
    record landed without a verdict gets one)."""
    body = [landed_line({k: v for k, v in ln.record.items() if k not in VERDICT_FIELDS},
                        why, rules_version) for ln, why in zip(lines, reasons, strict=True)]
    return ("\n".join(body) + "\n").encode()


def _heartbeats(body: bytes) -> list[int]:
    """The ``heartbeat`` of every line of a landed object, in order."""
    return [json.loads(line)["heartbeat"] for line in body.splitlines() if line.strip()]


def unlanded_rest(key: str, body: bytes, landed: bytes) -> tuple[str, bytes] | None:
    """What of ``body`` is still to land when ``landed`` is already at ``key``.

    A landed object is never rewritten with other lines: it may be registered and
    compacted already, so a rewrite would never reach the lake. Two runs that captured
    the same device at once (a run that outlived its killed worker, and the run that
    took over) batch the same slots differently and so name objects alike. ``None``
    when ``landed`` holds every slot of ``body`` (a replay); otherwise the key and bytes
    of the lines it lacks, named by the first of them like any batch, so that a replay of
    this very call writes the same object again."""
    seen = set(_heartbeats(landed))
    lines = [line for line in body.splitlines() if line.strip()]
    rest = [line for line, beat in zip(lines, _heartbeats(body), strict=True)
            if beat not in seen]
    if not rest:
        return None
    folder = key.rsplit("/", 1)[0]
    return f"{folder}/{json.loads(rest[0])['heartbeat']}.json", b"\n".join(rest) + b"\n"
