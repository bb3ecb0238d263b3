"""One request at a time per Modbus gateway (``host:port``), across threads and runs.

Devices behind one RTU-over-TCP gateway (or one serial line) share a bus that carries
one transaction at a time; most gateways answer a second concurrent client with errors
or garbage. Every poll of a sample therefore holds its gateway: an in-process lock per
``host:port`` (threads of one run) and, from the task layer, a Prefect global
concurrency limit named by :func:`gateway_limit_name` (runs in other processes).
"""

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from time import time
from typing import Protocol

from shopfloor.modbus.device import DeviceConfig

Gate = Callable[[float], AbstractContextManager[None]]
"""Holds a gateway for one poll; given the poll's deadline (epoch seconds), raises
:class:`GatewayBusy` when the gateway is not free before it."""

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class GatewayBusy(Exception):
    """The gateway stayed busy until the sample's deadline: the slot is missed."""


def gateway_key(cfg: DeviceConfig) -> str:
    """What devices share: ``host:port`` for TCP transports, the serial port for serial."""
    if cfg.transport == "serial":
        return f"serial:{cfg.serial_port}"
    return f"{cfg.host.lower()}:{cfg.port}"


def gateway_limit_name(host: str, port: int) -> str:
    """The Prefect global concurrency limit of a gateway: ``modbus-gateway-<host>-<port>``
    with every character but letters, digits and '-' (dots, IPv6 colons) as '-'."""
    return f"modbus-gateway-{re.sub(r'[^a-z0-9-]', '-', host.lower())}-{port}"


def gateway_lock(key: str) -> threading.Lock:
    """The process-wide lock of gateway ``key`` (created on first use)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


_SEMAPHORES: dict[tuple[str, int], threading.BoundedSemaphore] = {}


class SharedGate(Protocol):
    """A process-wide gateway gate: a lock or a bounded semaphore."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...


def gateway_semaphore(key: str, concurrency: int) -> SharedGate:
    """The process-wide gate of gateway ``key``: its lock at concurrency 1 (the default),
    else a semaphore of that many polls (a line file's ``gateways:`` says so)."""
    if concurrency <= 1:
        return gateway_lock(key)
    with _LOCKS_GUARD:
        return _SEMAPHORES.setdefault((key, concurrency), threading.BoundedSemaphore(concurrency))


def local_gate(key: str, then: Gate | None = None,
               clock: Callable[[], float] = time) -> Gate:
    """A :data:`Gate` holding the in-process lock of ``key``, then ``then`` (if any)."""

    @contextmanager
    def hold(deadline: float) -> Iterator[None]:
        lock = gateway_lock(key)
        if not lock.acquire(timeout=max(0.0, deadline - clock())):
            raise GatewayBusy(f"gateway {key} busy until the sample's deadline")
        try:
            if then is None:
                yield
            else:
                with then(deadline):
                    yield
        finally:
            lock.release()

    return hold
