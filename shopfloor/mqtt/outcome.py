"""How an ``mqtt-ingest`` run ends, from what it did (docs/mqtt.md, docs/operations.md)."""

from shopfloor.mqtt.ingest import IngestStats
from shopfloor.outcome import Verdict


def summary(stats: IngestStats) -> str:
    """One line a person reads: received, written, bad, and what Sparkplug B saw."""
    sp = stats.sparkplug
    parts = [f"received {stats.received} messages", f"wrote {stats.written} points "
             f"({stats.bad} bad, {stats.uncertain} uncertain)"]
    if stats.unmatched:
        parts.append(f"{stats.unmatched} messages matched no mapping")
    if sp.births or sp.deaths or sp.gaps or sp.unresolved:
        parts.append(f"Sparkplug B: {sp.births} births, {sp.deaths} deaths, {sp.gaps} "
                     f"sequence gaps, {sp.rebirths_requested} rebirth requests, "
                     f"{sp.unresolved} metrics without a birth")
    return ", ".join(parts)


def verdict(stats: IngestStats) -> Verdict:
    """Degraded when the warehouse could not take a batch (its messages stay with the
    broker's session for the next run), else Completed with the summary."""
    text = summary(stats)
    if stats.left_with_broker:
        return Verdict("degraded", f"{text}; the warehouse failed ({stats.last_error}): "
                       f"{stats.left_with_broker} messages left with the broker for the "
                       "next run")
    if stats.write_errors:
        text += f"; {stats.write_errors} warehouse write errors, retried and stored"
    return Verdict("completed", text)
