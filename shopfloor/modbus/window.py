"""Which sample slots a capture run owns: a window of time on an absolute grid.

Slots are the instants ``k * interval`` after the epoch (whole milliseconds), the same
for every run and device. A run owns the slots in the half-open window
``[start, start + span)``; consecutive scheduled runs (one every ``span``) own disjoint
windows that together cover every slot, so runs never sample a slot twice and leave
none out. A run that starts late begins at the first slot still ahead: the ones it
came too late for are counted as missed, never bunched up.
"""

from dataclasses import dataclass

from shopfloor.errors import ShopfloorError

# Seconds between a run's start and its first possible sample (the engine starts).
START_LEAD_SECONDS = 2.0
# A scheduled run samples [scheduled + offset, scheduled + offset + span): the offset
# gives the worker time to start the run (process or container) before its first
# slot. The next run, scheduled one span later, starts its window where this one ends.
# ``shopfloor worker`` also starts runs 30 s before their scheduled time (prefetch):
# the soak measured 33 s from submission to the first sample on 2 cores with four
# other runs starting in the same minute.
SCHEDULED_OFFSET_SECONDS = 30.0


def step_ms(interval: float) -> int:
    """The grid step in whole milliseconds (at least 1)."""
    return max(1, round(interval * 1000))


@dataclass(frozen=True)
class Window:
    """The slots ``first, first + interval, ...`` (``slots`` of them) a run owns, and
    where to begin: ``skip`` slots were already past when the run could start."""

    first: float  # epoch seconds of the window's first slot
    interval: float
    slots: int  # slots in the window
    skip: int = 0  # slots already past at the start (missed)

    @property
    def start(self) -> float:
        """Epoch seconds of the first slot the run will still try to take."""
        return self.first + self.skip * self.interval

    @property
    def remaining(self) -> int:
        """Slots the run will still try to take (0: the whole window is past)."""
        return self.slots - self.skip


def plan_window(window_start: float, span: float, interval: float, now: float,
                lead: float = 0.0) -> Window:
    """The slots of ``[window_start, window_start + span)`` and which are still ahead.

    ``now + lead`` is the earliest a sample can be taken (``lead`` covers starting the
    capture engine). Slots before it are skipped (missed); a slot exactly at it is
    still taken.

    Raises:
        ShopfloorError: ``interval`` or ``span`` not positive.
    """
    if interval <= 0 or span <= 0:
        raise ShopfloorError("a capture window needs interval_seconds > 0 and span_seconds > 0")
    step = step_ms(interval)
    start_ms = round(window_start * 1000)
    end_ms = round((window_start + span) * 1000)
    first_ms = -(-start_ms // step) * step  # ceil to the grid
    slots = max(0, -(-(end_ms - first_ms) // step))  # grid points in [first, end)
    ready_ms = round((now + lead) * 1000)
    skip = 0 if ready_ms <= first_ms else min(slots, -(-(ready_ms - first_ms) // step))
    return Window(first_ms / 1000, step / 1000, slots, skip)


def span_window_start(scheduled: float, span: float, offset: float) -> float:
    """Where the window of a deployment run scheduled at ``scheduled`` starts: the
    ``span`` boundary (counted from the epoch, UTC) at or before it, plus ``offset``.

    A cron firing on span boundaries (``0 * * * *`` for 3600 s) gets the window it was
    scheduled for; a run started in between (a rerun after a crash, one started by hand
    or by the restart automation) continues the current window from its first slot still
    ahead, so it never overlaps the next scheduled run.
    """
    span_ms = max(1, round(span * 1000))
    boundary_ms = (round(scheduled * 1000) // span_ms) * span_ms
    return boundary_ms / 1000 + offset
