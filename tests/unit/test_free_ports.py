"""free_port_run: ports drawn for servers that are not listening yet never collide."""

import socket

import pytest

from shopfloor.modbus import simulator
from shopfloor.modbus.simulator import PORT_WINDOW_ENV, free_port_run


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A small private window with the cursor at its start (a process starts at a random
    place in its window; the guarantee holds until the cursor wraps)."""
    low = free_port_run(64)
    monkeypatch.setenv(PORT_WINDOW_ENV, f"{low}:{low + 64}")
    monkeypatch.setattr(simulator, "_port_cursor", [low])
    return low, low + 64


def test_calls_before_any_bind_never_hand_out_a_port_twice(window: tuple[int, int]) -> None:
    low, high = window
    firsts = [free_port_run(3) for _ in range(21)]  # 63 ports of the 64: no repeat
    ports = [p + i for p in firsts for i in range(3)]
    assert len(set(ports)) == len(ports)
    assert all(low <= p < high for p in ports)


def test_a_bound_port_is_skipped(window: tuple[int, int]) -> None:
    low, _ = window
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", low + 1))
        first = free_port_run(2)  # low..low+1 holds the busy port
    assert first == low + 2


def test_a_run_longer_than_the_window_is_refused(window: tuple[int, int]) -> None:
    with pytest.raises(RuntimeError, match="do not fit"):
        free_port_run(65)
