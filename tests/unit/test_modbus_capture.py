"""The capture schedule and parameter checks (time is injected, nothing sleeps)."""

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from pymodbus.exceptions import ModbusIOException

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.breaker import CircuitBreaker
from shopfloor.modbus.capture import (
    CaptureStats,
    _Loop,
    batch_of,
    batch_slots,
    capture_device,
    check_distinct_locations,
    check_parameters,
    flush_every,
    schedule_anchor,
)
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.gateway import GatewayBusy
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


@pytest.mark.parametrize("devices, samples, interval, span, message", [
    (["a", "b", "a"], 1, 5.0, None, "listed twice: a"),
    (["a"], 3, 0.0, None, "must be > 0 when samples > 1"),
    (["a"], 12, 5.0, 60.0, "samples or span_seconds, not both"),
    (["a"], 1, 0.0, 60.0, "interval_seconds must be > 0 with span_seconds"),
    (["a"], 1, 5.0, 7200.0, "sample for 7200 s, longer than the 3900 s"),
    (["a"], 1000, 5.0, None, "sample for 4995 s, longer than the 3900 s"),
])
def test_bad_parameters(devices, samples, interval, span, message):
    with pytest.raises(ShopfloorError, match=message):
        check_parameters(devices, samples, interval, span, max_seconds=3900)


def test_good_parameters_pass():
    check_parameters(["a", "b"], 1, 0.0)  # one sample needs no interval
    check_parameters(["a"], 12, 5.0)
    check_parameters(["a"], 1, 5.0, 3600.0, max_seconds=3900)


def test_devices_sharing_a_location_are_rejected():
    with pytest.raises(ShopfloorError, match="'a' and 'b' share loc_id 'L1'"):
        check_distinct_locations([DeviceConfig("a", "L1", TAGS), DeviceConfig("b", "L1", TAGS)])


def test_batches_are_about_a_minute_of_samples_aligned_to_the_grid():
    assert flush_every(200, 0.0) == 200 and flush_every(5000, 0.0) == 1000
    assert (batch_slots(5.0), batch_slots(7.0), batch_slots(600.0)) == (12, 9, 1)
    # slot times 00:00:55 and 00:01:00 fall in different batches whatever the anchor
    minute = 1_795_305_600.0
    assert batch_of(minute - 5, 0, 5.0, 12) != batch_of(minute - 5, 1, 5.0, 12)
    assert batch_of(minute, 0, 5.0, 12) == batch_of(minute - 30, 6, 5.0, 12)


class FakeClient:
    """Answers holding-register reads while ``alive``; refuses connections otherwise."""

    def __init__(self, alive: Callable[[], bool]):
        self.alive = alive
        self.connected = False
        self.reads = 0

    def connect(self) -> bool:
        self.connected = self.alive()
        return self.connected

    def read_holding_registers(self, address: int, count: int, device_id: int):
        self.reads += 1
        if not self.alive():
            self.connected = False
            raise ModbusIOException("gone")
        return SimpleNamespace(isError=lambda: False, registers=[215] * count)

    def close(self) -> None:
        self.connected = False


CFG = DeviceConfig("d", "L", TAGS, retries=0, timeout_seconds=0.1, host="gw-test")


def test_a_dead_device_is_skipped_by_the_breaker_and_found_again():
    t = FakeTime(1000.0)
    dead = range(2, 40)  # slots 2..39 dead, then alive again
    client = FakeClient(lambda: round((t.now - 1000.0) / 5.0) not in dead)
    frames: list = []
    stats = capture_device(CFG, 60, 5.0, 1000.0, frames.append, clock=t.clock,
                           sleep=t.sleep, client=client,
                           breaker=CircuitBreaker(threshold=3, max_skip=8))
    assert stats.samples_ok + stats.samples_failed + stats.samples_skipped == 60
    assert stats.samples_skipped > 20 and stats.samples_failed < 10  # not polled every slot
    assert stats.samples_expected == 60 and stats.samples_missed == 0
    taken = [ts for f in frames for ts in f.capture_dts]
    assert len(taken) == stats.samples_ok and len(set(taken)) == len(taken)
    assert stats.samples_ok >= 60 - 40 + 2 - 8  # back within one longest skip
    assert max(taken).timestamp() == 1000.0 + 59 * 5.0  # sampled to the last slot


def test_a_busy_gateway_counts_the_slot_as_missed():
    t = FakeTime(1000.0)

    class Busy:
        def __init__(self, deadline: float):
            raise GatewayBusy("gateway gw-test:502 busy until the sample's deadline")

    frames: list = []
    stats = capture_device(CFG, 3, 5.0, 1000.0, frames.append, clock=t.clock, sleep=t.sleep,
                           client=FakeClient(lambda: True), gate=Busy)
    assert (stats.samples_ok, stats.samples_missed, frames) == (0, 3, [])
    assert "busy" in stats.last_error


def test_batches_are_flushed_at_grid_minutes():
    t = FakeTime(999.0)
    frames: list = []
    anchor = 1_795_305_600.0 - 30  # half a minute before a minute boundary
    t.now = anchor - 1
    capture_device(CFG, 24, 5.0, anchor, frames.append, clock=t.clock, sleep=t.sleep,
                   client=FakeClient(lambda: True))
    assert [len(f) for f in frames] == [6, 12, 6]


class ResettingClient(FakeClient):
    """A peer that resets the connection mid-read (a PLC rebooting, a gateway killed):
    pymodbus lets the socket's ConnectionResetError through."""

    def read_holding_registers(self, address: int, count: int, device_id: int):
        self.reads += 1
        if not self.alive():
            raise ConnectionResetError(104, "Connection reset by peer")
        return SimpleNamespace(isError=lambda: False, registers=[215] * count)


def test_a_connection_reset_mid_read_is_a_failed_sample_not_a_lost_batch():
    t = FakeTime(1000.0)
    client = ResettingClient(lambda: round((t.now - 1000.0) / 5.0) < 6)
    frames: list = []
    stats = capture_device(CFG, 12, 5.0, 1000.0, frames.append, clock=t.clock,
                           sleep=t.sleep, client=client)
    taken = [ts.timestamp() for f in frames for ts in f.capture_dts]
    assert taken == [1000.0 + 5.0 * k for k in range(6)]  # the good samples are kept
    assert stats.samples_ok == 6
    assert stats.samples_failed + stats.samples_skipped == 6
    assert any("ConnectionResetError" in e for e in stats.errors)


def test_with_no_answer_a_failed_sample_goes_on_as_a_sample_without_payload():
    """docs/tags.md, communication loss: the sink gets the slot (every tag missing) and
    writes its no-answer points; it still counts as failed, and skipped slots (the
    breaker) are not polled, so they give nothing."""
    t = FakeTime(1000.0)
    client = ResettingClient(lambda: round((t.now - 1000.0) / 5.0) < 6)
    frames: list = []
    taken: list = []
    stats = capture_device(CFG, 12, 5.0, 1000.0, frames.append, clock=t.clock,
                           sleep=t.sleep, client=client, on_sample=taken.append,
                           no_answer=True)
    lost = [ts.timestamp() for f in frames
            for ts, dead in zip(f.capture_dts, f.no_answer().tolist(), strict=True) if dead]
    assert stats.samples_ok == 6 and len(lost) == stats.samples_failed > 0
    assert all(t_ > 1000.0 + 5.0 * 5 for t_ in lost)  # the slots after the reset
    assert len(taken) == stats.samples_ok + stats.samples_failed  # the buffer gets them
    assert [s.payloads for s in taken[6:]] == [{}] * stats.samples_failed
