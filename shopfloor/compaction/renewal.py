"""Keeping a claim alive while a run works: a background thread that renews it.

A claim older than the TTL is taken over by the next run. A run that works longer than
the TTL (a big batch, a slow bucket) would lose its claim while still healthy, so the
run renews ``claimed_at`` of the keys it holds every ``ttl / 3``. A run that stops
renewing (the process is frozen, the database unreachable for a whole TTL) loses its
claim, and the fence before publishing (:func:`~shopfloor.compaction.claims.fence`)
makes it publish nothing.
"""

import threading
from collections.abc import Callable
from types import TracebackType

RENEWALS_PER_TTL = 3
MIN_INTERVAL_S = 1.0


def renewal_interval(ttl_seconds: float) -> float | None:
    """Seconds between renewals for a claim TTL, or ``None`` for a TTL of 0 (every claim
    is stale at once then: there is nothing to keep alive)."""
    if ttl_seconds <= 0:
        return None
    return max(ttl_seconds / RENEWALS_PER_TTL, MIN_INTERVAL_S)


class ClaimRenewal:
    """A context manager running ``renew`` every ``interval`` seconds in a daemon thread.

    ``renew`` returns how many keys are held; an exception from it (the database
    bounced) goes to ``on_error`` and the next renewal tries again: a missed renewal is
    not fatal by itself, a lost claim is caught by the fence.
    """

    def __init__(self, renew: Callable[[], int], interval: float | None,
                 on_error: Callable[[Exception], None] = lambda exc: None) -> None:
        self._renew, self._interval, self._on_error = renew, interval, on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0

    def _loop(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            try:
                self._renew()
                self.renewals += 1
            except Exception as exc:  # noqa: BLE001 - reported, retried next interval
                self._on_error(exc)

    def __enter__(self) -> "ClaimRenewal":
        if self._interval is not None:
            self._thread = threading.Thread(target=self._loop, name="claim-renewal",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
