"""Which window a capture run samples: scheduled runs, late runs, plain calls."""

from datetime import UTC, datetime
from functools import partial

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.capture import plan_schedule
from shopfloor.modbus.window import SCHEDULED_OFFSET_SECONDS

HOUR = datetime(2026, 11, 22, 10, tzinfo=UTC)
T = HOUR.timestamp()


# A deployment run scheduled for 10:00 UTC.
scheduled = partial(plan_schedule, scheduled=T)


def test_a_scheduled_run_samples_its_span_from_the_scheduled_time():
    # started 9 s after its schedule: the offset left room, nothing is missed
    assert scheduled(1, 5.0, 3600, None, now=T + 9) == (T + SCHEDULED_OFFSET_SECONDS, 720, 0)


def test_the_next_run_continues_the_grid():
    first, slots, _ = scheduled(1, 5.0, 60, 0.0, now=T - 5)
    nxt, _, _ = plan_schedule(1, 5.0, 60, 0.0, now=T + 55, scheduled=T + 60)
    assert nxt == first + slots * 5.0


def test_a_late_run_starts_at_the_first_slot_ahead_and_counts_the_rest_missed():
    first, slots, missed = scheduled(1, 5.0, 3600, 0.0, now=T + 600)
    assert (first, slots, missed) == (T + 605, 599, 121)  # 10:10:02 ready -> 10:10:05


def test_a_run_after_its_window_is_a_lost_window():
    with pytest.raises(ShopfloorError, match="window is lost"):
        scheduled(1, 5.0, 60, 0.0, now=T + 3 * 3600)


def test_a_plain_call_starts_now():
    first, slots, missed = plan_schedule(1, 1.0, 10, None, now=T + 0.5, scheduled=None)
    assert (first, slots, missed) == (T + 3, 10, 0)  # 2 s lead, on the grid
    assert plan_schedule(12, 5.0, None, None, now=T + 0.5, scheduled=None) == (T + 5, 12, 0)
