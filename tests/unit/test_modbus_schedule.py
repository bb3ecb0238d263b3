"""Which window a capture run samples: scheduled runs, late runs, plain calls."""

from datetime import UTC, datetime

import pytest
from prefect.runtime import deployment, flow_run

from flows.modbus_capture import SCHEDULED_OFFSET_SECONDS, _schedule
from shopfloor.errors import ShopfloorError

HOUR = datetime(2026, 11, 22, 10, tzinfo=UTC)
T = HOUR.timestamp()


@pytest.fixture
def scheduled(monkeypatch):
    """A deployment run scheduled for 10:00 UTC."""
    monkeypatch.setattr(deployment, "get_id", lambda: "dep-1")
    monkeypatch.setattr(flow_run, "get_scheduled_start_time", lambda: HOUR)


def test_a_scheduled_run_samples_its_span_from_the_scheduled_time(scheduled):
    # started 9 s after its schedule: the offset left room, nothing is missed
    assert _schedule(1, 5.0, 3600, None, now=T + 9) == (T + SCHEDULED_OFFSET_SECONDS, 720, 0)


def test_the_next_run_continues_the_grid(scheduled, monkeypatch):
    first, slots, _ = _schedule(1, 5.0, 60, 0.0, now=T - 5)
    monkeypatch.setattr(flow_run, "get_scheduled_start_time",
                        lambda: datetime.fromtimestamp(T + 60, UTC))
    nxt, _, _ = _schedule(1, 5.0, 60, 0.0, now=T + 55)
    assert nxt == first + slots * 5.0


def test_a_late_run_starts_at_the_first_slot_ahead_and_counts_the_rest_missed(scheduled):
    first, slots, missed = _schedule(1, 5.0, 3600, 0.0, now=T + 600)
    assert (first, slots, missed) == (T + 605, 599, 121)  # 10:10:02 ready -> 10:10:05


def test_a_run_after_its_window_is_a_lost_window(scheduled):
    with pytest.raises(ShopfloorError, match="window is lost"):
        _schedule(1, 5.0, 60, 0.0, now=T + 3 * 3600)


def test_a_plain_call_starts_now(monkeypatch):
    monkeypatch.setattr(deployment, "get_id", lambda: None)
    first, slots, missed = _schedule(1, 1.0, 10, None, now=T + 0.5)
    assert (first, slots, missed) == (T + 3, 10, 0)  # 2 s lead, on the grid
    assert _schedule(12, 5.0, None, None, now=T + 0.5) == (T + 5, 12, 0)
