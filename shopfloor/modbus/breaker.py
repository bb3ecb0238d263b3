"""A per-device circuit breaker: a device that keeps failing is asked less often.

After ``threshold`` consecutive failed samples the breaker opens: the device's next
slot is skipped, then it is probed again; each failed probe doubles the slots skipped
before the next one (1, 2, 4, ... up to ``max_skip``). One good sample closes it.
Skipping costs nothing (no connection, no timeout), so a dead device neither burns its
own timeouts every slot nor holds a shared gateway while it times out; the other
devices keep their schedule either way (each polls in its own coroutine).
"""

import math
from dataclasses import dataclass

DEFAULT_THRESHOLD = 3  # consecutive failed samples before slots are skipped
MAX_SKIP_SLOTS = 32
MAX_SKIP_SECONDS = 300.0  # a recovered device is seen again within about 5 minutes


def max_skip_for(interval: float, max_slots: int = MAX_SKIP_SLOTS,
                 max_seconds: float = MAX_SKIP_SECONDS) -> int:
    """The longest skip: ``max_slots`` slots, but no longer than ``max_seconds``."""
    if interval <= 0:
        return max_slots
    return max(1, min(max_slots, math.floor(max_seconds / interval)))


@dataclass
class CircuitBreaker:
    """Decides per slot whether to poll the device (:meth:`allow`) and learns from the
    outcome of each poll (:meth:`record`). Plain state, no clock: slots are the unit."""

    threshold: int = DEFAULT_THRESHOLD
    max_skip: int = MAX_SKIP_SLOTS
    failures: int = 0  # consecutive failed samples
    backoff: int = 0  # slots skipped after the last failure (0: closed)
    skip_left: int = 0  # slots still to skip before the next probe
    openings: int = 0  # times the breaker opened (a long outage counts once per probe)

    def allow(self) -> bool:
        """Whether to poll the device in this slot (False: skip it, one slot consumed)."""
        if self.skip_left > 0:
            self.skip_left -= 1
            return False
        return True

    def record(self, ok: bool) -> None:
        """The outcome of a poll the breaker allowed."""
        if ok:
            self.failures = self.backoff = self.skip_left = 0
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.backoff = 1 if self.backoff == 0 else min(2 * self.backoff, self.max_skip)
            self.skip_left = self.backoff
            self.openings += 1

    @property
    def open(self) -> bool:
        """True while the device is being skipped between probes."""
        return self.backoff > 0
