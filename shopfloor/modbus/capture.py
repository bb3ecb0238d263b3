"""The capture loop of one device: samples on a fixed schedule, batches handed to a sink.

Sample ``k`` is polled at ``anchor + k * interval`` (no drift: the schedule never moves
with how long a poll took). A device that falls a whole interval behind (it answers
slowly, or a retry ran long) skips the samples it missed instead of bunching them up.
A device that keeps failing is skipped for a growing number of slots by its
:class:`~shopfloor.modbus.breaker.CircuitBreaker`; every poll holds the device's
gateway (:mod:`shopfloor.modbus.gateway`).
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shopfloor.errors import ShopfloorError, UserError
from shopfloor.modbus.batch import Batch
from shopfloor.modbus.breaker import CircuitBreaker, max_skip_for
from shopfloor.modbus.client import DeviceConfig, device_plan, make_client, poll_sample
from shopfloor.modbus.gateway import Gate, GatewayBusy, gateway_key, local_gate
from shopfloor.modbus.planning import ReadRequest
from shopfloor.modbus.readings import RawSample, decode_batch, sample_time
from shopfloor.modbus.window import (
    SCHEDULED_OFFSET_SECONDS,
    START_LEAD_SECONDS,
    plan_window,
    span_window_start,
    step_ms,
)
from shopfloor.quality import artifact_scores

Sink = Callable[[Batch], None]


@dataclass
class CaptureStats:
    """What one device's capture did; the sink adds rows written and quarantined."""

    device: str
    planned_requests: int = 0
    samples_ok: int = 0
    samples_failed: int = 0
    samples_missed: int = 0
    samples_skipped: int = 0
    samples_expected: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    rows_valid: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    objects_landed: int = 0
    samples_buffered: int = 0  # store and forward: samples committed to the buffer
    last_error: str = ""
    errors: list[str] = field(default_factory=list)
    quality: dict[str, object] | None = None  # the run's quality_score row, if written

    def as_row(self) -> dict[str, object]:
        """The device's line in the flow's table artifact."""
        return {
            "device": self.device, "samples_ok": self.samples_ok,
            "samples_failed": self.samples_failed, "samples_missed": self.samples_missed,
            "samples_skipped": self.samples_skipped,
            "requests_planned": self.planned_requests, "requests_sent": self.requests_sent,
            "requests_failed": self.requests_failed, "rows_valid": self.rows_valid,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined, "objects_landed": self.objects_landed,
            "samples_buffered": self.samples_buffered,
            "last_error": self.last_error, **artifact_scores(self.quality),
        }


def flush_every(samples: int, interval: float, seconds: float = 60.0) -> int:
    """Samples per batch when there is no grid (``interval`` 0): all, at most 1000."""
    if interval <= 0:
        return max(1, min(samples, 1000))
    return max(1, min(samples, math.ceil(seconds / interval)))


def batch_slots(interval: float, seconds: float = 60.0) -> int:
    """Grid slots per batch: about one write a minute, so a long run lands data as it goes."""
    return max(1, math.ceil(seconds / interval))


def batch_of(anchor: float, k: int, interval: float, per_batch: int) -> int:
    """Which batch slot ``k`` belongs to. Batches are aligned to the absolute grid
    (slot number since the epoch // ``per_batch``), so every run cuts the same slots
    into the same batches, and a repeat lands the same objects."""
    if interval <= 0:
        return k // per_batch
    step = step_ms(interval)
    return (round((anchor + k * interval) * 1000) // step) // per_batch


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

    def budget(self, interval: float) -> float:
        return interval if interval > 0 else self.cfg.timeout_seconds * (self.cfg.retries + 1)

    def poll(self, client: object, deadline: float) -> dict[int, list] | None:
        result = poll_sample(client, self.plan, self.cfg, deadline, self.sleep)
        self.stats.requests_sent += result.requests_sent
        self.stats.requests_failed += result.requests_failed
        if result.errors:
            self.note(result.errors[-1])
        if not result.ok:
            self.stats.samples_failed += 1
            return None
        self.stats.samples_ok += 1
        return result.payloads

    def note(self, error: str) -> None:
        self.stats.last_error = error
        if len(self.stats.errors) < 20:
            self.stats.errors.append(error)


def capture_device(
    cfg: DeviceConfig, samples: int, interval: float, anchor: float, sink: Sink,
    clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
    client: object | None = None, progress: Callable[[int], None] | None = None,
    stats: CaptureStats | None = None, gate: Gate | None = None,
    breaker: CircuitBreaker | None = None, per_batch: int | None = None,
    on_sample: Callable[[RawSample], None] | None = None, no_answer: bool = False,
) -> CaptureStats:
    """Poll ``cfg`` ``samples`` times from ``anchor`` (epoch seconds) every ``interval`` s.

    Readings go to ``sink`` as batches (arrays per tag, see :func:`decode_batch`) in
    batches aligned to the grid (see :func:`batch_of`), the last one at the end.
    Device failures are counted, never raised: other devices keep their schedule.
    ``progress`` is called with 1 after every sample (taken, failed, missed or skipped).
    Pass ``stats`` to share the counters with the sink. ``gate`` holds the device's
    gateway around each poll (default: the in-process lock of its ``host:port``);
    ``breaker`` skips slots of a failing device (default: a :class:`CircuitBreaker`
    whose longest skip fits :func:`max_skip_for` ``interval``). ``per_batch`` overrides
    the slots per batch (the benchmark replays an hour's 12-slot batches unpaced).
    ``on_sample`` gets every sample as read, before the next slot (store and forward
    commits it to the buffer there); an error it raises stops the capture.
    ``no_answer``: a sample the device answered no read of goes on too, as a sample
    without payload (counted failed all the same), so the sink writes a bad point per
    tag for its slot (:meth:`Batch.no_answer`); sinks that only want readings leave it off.
    A ``client`` passed in stays open at the end: its owner closes it (the engine shares
    one per serial line, :mod:`~shopfloor.modbus.serial_bus`); one made here is closed.
    """
    plan = device_plan(cfg)
    stats = stats if stats is not None else CaptureStats(cfg.name)
    stats.planned_requests = len(plan)
    stats.samples_expected += samples
    loop = _Loop(cfg, plan, stats, clock, sleep)
    gate = gate if gate is not None else local_gate(gateway_key(cfg), clock=clock)
    breaker = breaker if breaker is not None else CircuitBreaker(max_skip=max_skip_for(interval))
    owned = client is None
    client = make_client(cfg) if client is None else client
    batch: list[RawSample] = []
    if per_batch is None:
        per_batch = flush_every(samples, interval) if interval <= 0 else batch_slots(interval)
    try:
        for k in range(samples):
            due = anchor + k * interval
            if not breaker.allow():
                stats.samples_skipped += 1
            elif not loop.wait_for(due, interval):
                stats.samples_missed += 1
            else:
                try:
                    with gate(due + loop.budget(interval)):
                        payloads = loop.poll(client, due + loop.budget(interval))
                except GatewayBusy as exc:
                    stats.samples_missed += 1
                    loop.note(str(exc))
                else:
                    breaker.record(payloads is not None)
                    if payloads is not None or no_answer:
                        batch.append(RawSample(sample_time(anchor, k, interval),
                                               payloads or {}))
                        if on_sample is not None:
                            on_sample(batch[-1])
            if progress is not None:
                progress(1)
            last = k + 1 == samples
            if batch and (last or batch_of(anchor, k + 1, interval, per_batch)
                          != batch_of(anchor, k, interval, per_batch)):
                sink(decode_batch(cfg, plan, batch))
                batch = []
    finally:
        if owned:
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


def plan_schedule(samples: int, interval: float, span: float | None, offset: float | None,
                  now: float, scheduled: float | None) -> tuple[float, int, int]:
    """``(first slot, slots to take, slots missed at the start)`` of a run at ``now``.

    Without ``span``: ``samples`` slots on the interval grid from now. With it: the slots
    of the run's window; ``scheduled`` (epoch seconds) is the time a deployment run was
    scheduled for (its window starts at that span boundary plus ``offset``, default
    :data:`SCHEDULED_OFFSET_SECONDS`), None for a plain call (the window starts now plus
    ``offset``).

    Raises:
        ShopfloorError: the whole window had passed when the run started (a lost window).
    """
    if span is None:  # a number of samples from now, on the interval grid
        return schedule_anchor(interval, now=now + START_LEAD_SECONDS), samples, 0
    if scheduled is not None:
        start = span_window_start(scheduled, span,
                                  SCHEDULED_OFFSET_SECONDS if offset is None else offset)
    else:
        start = now + START_LEAD_SECONDS + (offset or 0.0)
    window = plan_window(start, span, interval, now=now, lead=START_LEAD_SECONDS)
    if window.remaining == 0:
        raise ShopfloorError(
            f"the run started after its window ({window.slots} slots from "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(window.first))} UTC) had "
            "passed: the window is lost (no sample taken)")
    return window.start, window.remaining, window.skip


def check_parameters(devices: Sequence[str], samples: int, interval_seconds: float,
                     span_seconds: float | None = None,
                     max_seconds: float | None = None) -> None:
    """The modbus-capture rules its parameter types cannot say (the flow's signature holds
    the bounds: 1..MAX_DEVICES devices, ``samples >= 1``, ``interval_seconds >= 0``,
    ``span_seconds > 0``).

    Called by the flow and by ``shopfloor modbus capture`` before any block is loaded
    or device contacted. ``max_seconds`` is the longest a run may sample (the flow's
    timeout less a margin).

    Raises:
        ShopfloorError: with what is wrong and how to fix it.
    """
    dupes = sorted({d for d in devices if list(devices).count(d) > 1})
    if dupes:
        raise UserError(f"devices listed twice: {', '.join(dupes)}")
    if span_seconds is not None:
        if samples != 1:
            raise UserError("give samples or span_seconds, not both: a span takes every "
                                 "slot of its window")
        if interval_seconds <= 0:
            raise UserError("interval_seconds must be > 0 with span_seconds")
        duration = span_seconds
    else:
        if samples > 1 and interval_seconds == 0:
            raise UserError("interval_seconds must be > 0 when samples > 1")
        duration = (samples - 1) * interval_seconds
    if max_seconds is not None and duration > max_seconds:
        raise UserError(
            f"the run would sample for {duration:.0f} s, longer than the {max_seconds:.0f} s "
            "its timeout allows: use a shorter span (and schedule runs every span)")


def check_distinct_locations(configs: Sequence[DeviceConfig]) -> None:
    """Two devices with one ``loc_id`` would overwrite each other's rows (same key)."""
    seen: dict[str, str] = {}
    for cfg in configs:
        if cfg.loc_id in seen:
            raise UserError(
                f"devices {seen[cfg.loc_id]!r} and {cfg.name!r} share loc_id {cfg.loc_id!r}: "
                "their readings would overwrite each other in temperature_raw")
        seen[cfg.loc_id] = cfg.name


def check_landing(configs: Sequence[DeviceConfig]) -> None:
    """Landing JSON needs a district on every device (landed keys start with it).

    Raises:
        UserError: naming the devices without one.
    """
    missing = [c.name for c in configs if not c.district]
    if missing:
        raise UserError(
            f"land_json needs a district on every device, missing on {', '.join(missing)}: "
            "landed keys start with dstrct_code=<code>/ so registration finds the district "
            "(shopfloor modbus add-device NAME --district CODE ...)")
