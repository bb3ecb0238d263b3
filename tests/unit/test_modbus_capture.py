"""The capture schedule and parameter checks (time is injected, nothing sleeps)."""

from datetime import UTC, datetime

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.capture import (
    CaptureStats,
    _Loop,
    check_distinct_locations,
    check_parameters,
    flush_every,
    schedule_anchor,
)
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.readings import sample_time
from shopfloor.modbus.tags import TagSpec

TAGS = (TagSpec(name="t", column="temperature", address=0),)


class FakeTime:
    def __init__(self, now: float):
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_anchor_is_the_next_multiple_of_the_interval():
    assert schedule_anchor(5.0, now=1_000_002.3) == 1_000_005.0
    assert schedule_anchor(0.25, now=100.1) == 100.25
    assert schedule_anchor(5.0, now=1_000_005.0) == 1_000_005.0


def test_sample_times_do_not_drift():
    times = [sample_time(1_000_000.0, k, 0.1) for k in range(1000)]
    assert times[999] == datetime.fromtimestamp(1_000_099.9, UTC)
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)} == {0.1}


def test_waits_for_the_due_time_and_skips_when_a_whole_interval_late():
    t = FakeTime(100.0)
    loop = _Loop(DeviceConfig("d", "L", TAGS), [], CaptureStats("d"), t.clock, t.sleep)
    assert loop.wait_for(101.5, 1.0) and t.slept == [1.5] and t.now == 101.5
    t.now = 102.4  # slow poll: 0.9 s late for the sample due at 101.5 -> still taken
    assert loop.wait_for(101.5, 1.0)
    t.now = 103.6  # more than one interval late -> skipped
    assert not loop.wait_for(102.5, 1.0)


@pytest.mark.parametrize("devices, samples, interval, message", [
    (["a", "b", "a"], 1, 5.0, "listed twice: a"),
    (["a"], 3, 0.0, "must be > 0 when samples > 1"),
])
def test_bad_parameters(devices, samples, interval, message):
    with pytest.raises(ShopfloorError, match=message):
        check_parameters(devices, samples, interval)


def test_good_parameters_pass():
    check_parameters(["a", "b"], 1, 0.0)  # one sample needs no interval
    check_parameters(["a"], 12, 5.0)


def test_devices_sharing_a_location_are_rejected():
    with pytest.raises(ShopfloorError, match="'a' and 'b' share loc_id 'L1'"):
        check_distinct_locations([DeviceConfig("a", "L1", TAGS), DeviceConfig("b", "L1", TAGS)])


def test_batches_are_about_a_minute_of_samples():
    assert flush_every(720, 5.0) == 12
    assert flush_every(3, 5.0) == 3
    assert flush_every(200, 0.0) == 200
    assert flush_every(10, 600.0) == 1
