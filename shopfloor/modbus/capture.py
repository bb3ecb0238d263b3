"""The capture loop of one device: samples on a fixed schedule, batches handed to a sink.

Sample ``k`` is polled at ``anchor + k * interval`` (no drift: the schedule never moves
with how long a poll took). A device that falls a whole interval behind (it answers
slowly, or a retry ran long) skips the samples it missed instead of bunching them up.
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.client import DeviceConfig, device_plan, make_client, poll_sample
from shopfloor.modbus.planning import ReadRequest
from shopfloor.modbus.readings import RawSample, decode_batch, sample_time

Sink = Callable[[pd.DataFrame], None]


@dataclass
class CaptureStats:
    """What one device's capture did; the sink adds rows written and quarantined."""

    device: str
    planned_requests: int = 0
    samples_ok: int = 0
    samples_failed: int = 0
    samples_missed: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    rows_valid: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    objects_landed: int = 0
    last_error: str = ""
    errors: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, object]:
        """The device's line in the flow's table artifact."""
        return {
            "device": self.device, "samples_ok": self.samples_ok,
            "samples_failed": self.samples_failed, "samples_missed": self.samples_missed,
            "requests_planned": self.planned_requests, "requests_sent": self.requests_sent,
            "requests_failed": self.requests_failed, "rows_valid": self.rows_valid,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined, "objects_landed": self.objects_landed,
            "last_error": self.last_error,
        }


def flush_every(samples: int, interval: float, seconds: float = 60.0) -> int:
    """Samples per batch: about one write a minute, so a long run lands data as it goes."""
    if interval <= 0:
        return max(1, min(samples, 1000))
    return max(1, min(samples, math.ceil(seconds / interval)))


@dataclass
class _Loop:
    cfg: DeviceConfig
    plan: list[ReadRequest]
    stats: CaptureStats
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    def wait_for(self, due: float, interval: float) -> bool:
        """Sleep until ``due``; False when the device is a whole interval late (skip)."""
        late = self.clock() - due
        if late < 0:
            self.sleep(-late)
            return True
        return interval <= 0 or late < interval

    def poll(self, client: object, due: float, interval: float) -> dict[int, list] | None:
        budget = interval if interval > 0 else self.cfg.timeout_seconds * (self.cfg.retries + 1)
        result = poll_sample(client, self.plan, self.cfg, due + budget, self.sleep)
        self.stats.requests_sent += result.requests_sent
        self.stats.requests_failed += result.requests_failed
        if result.errors:
            self.stats.last_error = result.errors[-1]
            if len(self.stats.errors) < 20:
                self.stats.errors.append(result.errors[-1])
        if not result.ok:
            self.stats.samples_failed += 1
            return None
        self.stats.samples_ok += 1
        return result.payloads


def capture_device(
    cfg: DeviceConfig, samples: int, interval: float, anchor: float, sink: Sink,
    clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
    client: object | None = None, progress: Callable[[int], None] | None = None,
    stats: CaptureStats | None = None,
) -> CaptureStats:
    """Poll ``cfg`` ``samples`` times from ``anchor`` (epoch seconds) every ``interval`` s.

    Readings go to ``sink`` as frames (one row per sample, see :func:`decode_batch`) in
    batches (see :func:`flush_every`) and once at the end.
    Device failures are counted, never raised: other devices keep their schedule.
    ``progress`` is called with 1 after every sample (taken, failed or skipped). Pass
    ``stats`` to share the counters with the sink.
    """
    plan = device_plan(cfg)
    stats = stats if stats is not None else CaptureStats(cfg.name)
    stats.planned_requests = len(plan)
    loop = _Loop(cfg, plan, stats, clock, sleep)
    client = client if client is not None else make_client(cfg)
    batch: list[RawSample] = []
    size = flush_every(samples, interval)
    try:
        for k in range(samples):
            due = anchor + k * interval
            if not loop.wait_for(due, interval):
                stats.samples_missed += 1
            elif (payloads := loop.poll(client, due, interval)) is not None:
                batch.append(RawSample(sample_time(anchor, k, interval), payloads))
            if progress is not None:
                progress(1)
            if len(batch) >= size:
                sink(decode_batch(cfg, plan, batch))
                batch = []
        if batch:
            sink(decode_batch(cfg, plan, batch))
    finally:
        client.close()  # type: ignore[attr-defined]
    return stats


def schedule_anchor(interval: float, now: float | None = None) -> float:
    """The first sample time: the next multiple of ``interval`` (like Telegraf's
    ``round_interval``), so runs and devices line up on the same timestamps."""
    now = time.time() if now is None else now
    if interval <= 0:
        return now
    step_ms = max(1, round(interval * 1000))
    return math.ceil(now * 1000 / step_ms) * step_ms / 1000


def check_parameters(devices: Sequence[str], samples: int, interval_seconds: float) -> None:
    """The modbus-capture rules its parameter types cannot say (the flow's signature holds
    the bounds: 1..64 devices, ``samples >= 1``, ``interval_seconds >= 0``).

    Called by the flow and by ``shopfloor modbus capture`` before any block is loaded
    or device contacted.

    Raises:
        ShopfloorError: with what is wrong and how to fix it.
    """
    dupes = sorted({d for d in devices if list(devices).count(d) > 1})
    if dupes:
        raise ShopfloorError(f"devices listed twice: {', '.join(dupes)}")
    if samples > 1 and interval_seconds == 0:
        raise ShopfloorError("interval_seconds must be > 0 when samples > 1")


def check_distinct_locations(configs: Sequence[DeviceConfig]) -> None:
    """Two devices with one ``loc_id`` would overwrite each other's rows (same key)."""
    seen: dict[str, str] = {}
    for cfg in configs:
        if cfg.loc_id in seen:
            raise ShopfloorError(
                f"devices {seen[cfg.loc_id]!r} and {cfg.name!r} share loc_id {cfg.loc_id!r}: "
                "their readings would overwrite each other in temperature_raw")
        seen[cfg.loc_id] = cfg.name
