"""Capture windows on the absolute slot grid: gapless, disjoint, late starts (pure)."""

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.window import Window, plan_window

HOUR = 1_795_305_600.0  # 2026-11-22 00:00:00 UTC, on every grid below


def test_a_window_on_time_takes_every_slot_of_its_span():
    w = plan_window(HOUR, 3600, 5.0, now=HOUR - 10)
    assert (w.first, w.slots, w.skip, w.start, w.remaining) == (HOUR, 720, 0, HOUR, 720)


def test_consecutive_windows_cover_the_grid_without_gap_or_overlap():
    # runs every span, windows shifted by an offset that is not on the grid
    slots: list[int] = []
    for run in range(5):
        w = plan_window(HOUR + 30.5 + run * 60, 60, 7.0, now=0)
        slots += [round((w.first + k * w.interval) * 1000) for k in range(w.slots)]
    assert slots == sorted(set(slots))  # no slot twice
    steps = {b - a for a, b in zip(slots, slots[1:], strict=False)}
    assert steps == {7000}  # none left out
    assert slots[0] % 7000 == 0 and 0 <= slots[0] - (HOUR + 30.5) * 1000 < 7000  # on the grid


def test_a_late_run_starts_at_the_first_slot_still_ahead():
    w = plan_window(HOUR, 60, 5.0, now=HOUR + 17.0, lead=2.0)
    assert (w.skip, w.start, w.remaining) == (4, HOUR + 20, 8)  # 0,5,10,15 missed


def test_a_slot_exactly_at_the_start_is_still_taken():
    assert plan_window(HOUR, 60, 5.0, now=HOUR - 2.0, lead=2.0).skip == 0


def test_a_run_after_its_whole_window_takes_nothing():
    w = plan_window(HOUR, 60, 5.0, now=HOUR + 61)
    assert (w.slots, w.skip, w.remaining) == (12, 12, 0)


def test_sub_second_grid_is_exact_in_milliseconds():
    w = plan_window(100.05, 1.0, 0.1, now=0)
    assert (w.first, w.slots) == (100.1, 10)  # 100.1 .. 101.0; 101.1 is the next window's
    assert plan_window(100.0, 1.0, 0.1, now=0).slots == 10  # 100.0 .. 100.9: half-open


@pytest.mark.parametrize("span, interval", [(0, 5.0), (60, 0.0)])
def test_a_window_needs_a_span_and_an_interval(span, interval):
    with pytest.raises(ShopfloorError, match="interval_seconds > 0 and span_seconds > 0"):
        plan_window(HOUR, span, interval, now=HOUR)


def test_window_properties():
    assert Window(10.0, 2.0, 5, 2).start == 14.0 and Window(10.0, 2.0, 5, 2).remaining == 3


def test_a_run_between_span_boundaries_continues_the_current_window():
    from shopfloor.modbus.window import span_window_start

    hour = 1_796_162_400.0  # an hour boundary (epoch seconds)
    assert span_window_start(hour, 3600, 30) == hour + 30  # the scheduled run
    assert span_window_start(hour + 23 * 60 + 7.5, 3600, 30) == hour + 30  # a rerun
    assert span_window_start(hour + 3599.999, 3600, 30) == hour + 30
    assert span_window_start(hour + 3600, 3600, 30) == hour + 3630  # the next one
    assert span_window_start(hour + 61, 60, 30) == hour + 90
