"""How a capture run ends and what it tells the automations, decided from its devices'
counters (the flow only applies it)."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shopfloor.modbus.capture import CaptureStats
from shopfloor.modbus.client import DeviceConfig
from shopfloor.outcome import COMPLETED, Verdict

CAPTURED_EVENT = "shopfloor.capture.completed"
DEAD_EVENT = "shopfloor.device.dead"


def artifact_key(device: str) -> str:
    """The key of a device's own artifact (Prefect keys: lowercase, digits, dashes)."""
    return "modbus-capture-" + re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


@dataclass(frozen=True)
class DeviceEvent:
    """One event a capture run emits about a device."""

    event: str
    resource: str
    payload: dict[str, Any]
    labels: dict[str, str]


def device_events(configs: Sequence[DeviceConfig], stats: Sequence[CaptureStats]
                  ) -> list[DeviceEvent]:
    """``shopfloor.capture.completed`` for a device with a valid reading, else
    ``shopfloor.device.dead`` with its last error (the freshness automations watch the
    first); labelled with the device's district when it has one."""
    events = []
    for cfg, s in zip(configs, stats, strict=True):
        payload: dict[str, Any] = {
            "samples_ok": s.samples_ok, "samples_expected": s.samples_expected,
            "rows_written": s.rows_written, "rows_quarantined": s.rows_quarantined}
        labels = {"shopfloor.district": cfg.district} if cfg.district else {}
        if s.rows_valid:
            events.append(DeviceEvent(CAPTURED_EVENT, f"shopfloor.device.{cfg.name}",
                                      payload, labels))
        else:
            events.append(DeviceEvent(DEAD_EVENT, f"shopfloor.device.{cfg.name}",
                                      {**payload, "last_error": s.last_error}, labels))
    return events


def verdict(stats: Sequence[CaptureStats], missed_at_start: int = 0) -> Verdict:
    """Judge a run from its devices' counters.

    Failed: not one valid reading from any device (every device dead, or every reading
    quarantined). Degraded: a device gave no valid reading in the whole run, some
    readings were quarantined, or the run started after ``missed_at_start`` of its
    slots had passed. Otherwise completed.
    """
    if not any(s.rows_valid for s in stats):
        return Verdict("failed", "no valid reading from any device: " + "; ".join(
            f"{s.device}: {_why_nothing(s)}" for s in stats))
    problems = []
    dead = [s for s in stats if not s.rows_valid]
    if dead:
        problems.append("no valid reading from " + ", ".join(
            f"{s.device} ({_why_nothing(s)})" for s in dead))
    bad = [s for s in stats if s.rows_valid and s.rows_quarantined]
    if bad:
        problems.append("readings quarantined: " + ", ".join(
            f"{s.device} {s.rows_quarantined}" for s in bad))
    if missed_at_start:
        problems.append(f"started late: the first {missed_at_start} slots of the window "
                        "were missed")
    if problems:
        return Verdict("degraded", "; ".join(problems))
    return COMPLETED


def _why_nothing(s: CaptureStats) -> str:
    if s.rows_quarantined:
        return f"all {s.rows_quarantined} readings quarantined"
    return s.last_error or "no reading"


def final_verdict(judged: Verdict, buffer_summary: str, backlog: bool) -> Verdict:
    """The run's verdict with what store-and-forward left: a failed run names the buffer's
    state, a degraded one its backlog; a run that buffered everything but could not
    forward all of it did its job (Completed, the backlog named in the message)."""
    if judged.kind == "failed":
        return Verdict("failed", judged.message
                       + (f" ({buffer_summary})" if buffer_summary else ""))
    if judged.kind == "degraded":
        return Verdict("degraded", judged.message + (f"; {buffer_summary}" if backlog else ""))
    return Verdict("completed", buffer_summary) if backlog else COMPLETED
