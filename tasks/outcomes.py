"""How a run says what it achieved, and the events the automations in ``automations.yaml``
watch. One vocabulary for every flow (docs/operations.md):

- **Failed** (raise): the run could not do its job at all: every reading quarantined,
  every device dead for the whole run, every listed key skipped, its claim taken over.
  Prefect marks it Failed; the ``notify-failed-runs`` automation tells someone.
- **Degraded** (:func:`degraded`): a Completed state named ``Degraded``: the run did
  part of its job (one device of five dead, some keys skipped). Its state event is
  ``prefect.flow-run.Degraded``, which the same automation acts on.
- **Idle** (:func:`idle`): a Completed state named ``Idle``: nothing was due (no new
  objects, no pending keys). Not notified; the freshness automations notice a chain
  that stays idle for too long.
- **Completed**: the job was done.

Flows return ``degraded(...)``/``idle(...)``; a plain Python call still gets the
summary (Prefect returns a returned state's data).
"""

from typing import Any

from prefect.events import emit_event
from prefect.states import Completed, State

DEGRADED = "Degraded"
IDLE = "Idle"


def degraded(summary: Any, message: str) -> State:
    """A Completed state named ``Degraded`` carrying ``summary`` (part of the job undone)."""
    return Completed(name=DEGRADED, message=message, data=summary)


def idle(summary: Any, message: str) -> State:
    """A Completed state named ``Idle`` carrying ``summary`` (nothing was due)."""
    return Completed(name=IDLE, message=message, data=summary)


def emit(event: str, resource_id: str, payload: dict[str, Any] | None = None,
         **labels: str) -> None:
    """Emit ``event`` about ``resource_id`` (e.g. ``shopfloor.device.line1-plc``).

    The flow run is added as a related resource by Prefect. Extra ``labels`` go on the
    resource, so an automation can match on them (``shopfloor.district``...).
    """
    emit_event(event=event, resource={"prefect.resource.id": resource_id, **labels},
               payload=payload or {})
