"""How a run ends, decided in the domain from what it did; the flow only applies it
(``tasks.outcomes.conclude``). The vocabulary is the one of docs/operations.md."""

from dataclasses import dataclass
from typing import Literal

Kind = Literal["completed", "idle", "degraded", "failed"]


@dataclass(frozen=True)
class Verdict:
    """``failed`` (the flow raises; ``integrity`` says the run stopped so as not to write
    wrong data), ``idle`` (nothing was due), ``degraded`` (part of the job undone) or
    ``completed`` (a message, if any, is carried by the Completed state), with the
    message a person reads."""

    kind: Kind
    message: str = ""
    integrity: bool = False


COMPLETED = Verdict("completed")


def from_notes(notes: list[str]) -> Verdict:
    """Degraded with the notes joined when there are any, else completed."""
    return Verdict("degraded", "; ".join(notes)) if notes else COMPLETED
