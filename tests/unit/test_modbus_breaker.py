"""The per-device circuit breaker and the gateway locks (pure; nothing sleeps)."""

import threading

import pytest

from shopfloor.modbus.breaker import CircuitBreaker, max_skip_for
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.gateway import (
    GatewayBusy,
    gateway_key,
    gateway_limit_name,
    gateway_lock,
    local_gate,
)


def _pattern(breaker: CircuitBreaker, slots: int, alive: set[int] | None = None) -> str:
    """One character per slot: P polled and failed, O polled and answered, s skipped."""
    out = []
    for k in range(slots):
        if not breaker.allow():
            out.append("s")
            continue
        ok = alive is not None and k in alive
        breaker.record(ok)
        out.append("O" if ok else "P")
    return "".join(out)


def test_a_dead_device_is_skipped_for_growing_runs_of_slots_up_to_the_cap():
    b = CircuitBreaker(threshold=3, max_skip=4)
    assert _pattern(b, 22) == "PPP" + "sP" + "ssP" + "ssssP" + "ssssP" + "ssss"
    assert b.open and b.backoff == 4


def test_a_recovered_device_is_probed_and_the_breaker_resets():
    b = CircuitBreaker(threshold=2, max_skip=8)
    # dead for slots 0..9, alive from slot 10 on: seen again at the first probe after 10
    pattern = _pattern(b, 20, alive=set(range(10, 20)))
    assert pattern == "PP" + "sP" + "ssP" + "ssss" + "O" * 9
    assert not b.open and b.failures == 0
    assert _pattern(b, 3) == "PPs"  # fresh: the threshold counts again from zero


def test_isolated_failures_never_open_it():
    b = CircuitBreaker(threshold=3)
    assert _pattern(b, 9, alive={2, 5, 8}) == "PPOPPOPPO"


@pytest.mark.parametrize("interval, expected", [(5.0, 32), (1.0, 32), (60.0, 5), (600.0, 1),
                                                (0.0, 32)])
def test_longest_skip_is_32_slots_or_5_minutes(interval, expected):
    assert max_skip_for(interval) == expected


def test_gateway_names():
    cfg = DeviceConfig("d", "L", (), host="10.0.0.5", port=502)
    assert gateway_key(cfg) == "10.0.0.5:502"
    assert gateway_limit_name("10.0.0.5", 502) == "modbus-gateway-10-0-0-5-502"
    assert gateway_limit_name("GW1.plant.local", 4001) == "modbus-gateway-gw1-plant-local-4001"
    assert gateway_limit_name("fe80::1", 502) == "modbus-gateway-fe80--1-502"
    serial = DeviceConfig("d", "L", (), transport="serial", serial_port="/dev/ttyUSB0")
    assert gateway_key(serial) == "serial:/dev/ttyUSB0"


def test_a_busy_gateway_is_waited_for_until_the_deadline_then_reported():
    gate = local_gate("test-gw:1", clock=lambda: 0.0)
    lock = gateway_lock("test-gw:1")
    with gate(1.0):
        assert lock.locked()
        other = threading.Thread(target=_expect_busy, args=(gate,))
        other.start()
        other.join(30)
        assert not other.is_alive()
    assert not lock.locked()
    with gate(0.0):  # free: no wait needed, even with no time left
        pass


def _expect_busy(gate) -> None:
    with pytest.raises(GatewayBusy, match="test-gw:1 busy"):
        with gate(0.0):  # no time left while the other thread holds it
            pass


def test_then_is_held_inside_the_lock():
    seen = []

    class Inner:
        def __init__(self, deadline):
            seen.append(("in", deadline, gateway_lock("gw-x:1").locked()))

        def __enter__(self):
            return None

        def __exit__(self, *exc):
            seen.append(("out",))

    with local_gate("gw-x:1", then=Inner)(5.0):
        pass
    assert seen == [("in", 5.0, True), ("out",)]
