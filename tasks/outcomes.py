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

Which one a run ends in is decided in the domain from what it did (a
:class:`~shopfloor.outcome.Verdict`, e.g. ``shopfloor.compaction.outcome.verdict``); the
flow applies it with :func:`conclude`, which raises or returns ``degraded(...)`` /
``idle(...)``. A plain Python call still gets the summary (Prefect returns a returned
state's data).

Failed and Degraded runs also emit ``shopfloor.run.failed`` / ``shopfloor.run.degraded``
(resource ``shopfloor.flow-run.<id>``), which the ``shopfloor-failed-runs`` automation
watches: Prefect's own state events of scheduler-created runs reached the automations
only after a long delay here (docs/operations.md), shopfloor's own events at once.
Every flow lists :data:`ON_FAILURE` as its ``on_failure`` hook.
"""

from typing import Any

from prefect.events import emit_event
from prefect.states import Completed, State

from shopfloor.errors import DataIntegrityError, ShopfloorError
from shopfloor.outcome import Verdict
from tasks.runtime import run_id, run_names

DEGRADED = "Degraded"
IDLE = "Idle"
FAILED_EVENT = "shopfloor.run.failed"
DEGRADED_EVENT = "shopfloor.run.degraded"


def _emit_outcome(event: str, run_id: object, flow_name: str, run_name: str, state: str,
                  message: str) -> None:
    if run_id is None:
        return  # not a flow run (a unit test of a flow's function)
    emit_event(event=event,
               resource={"prefect.resource.id": f"shopfloor.flow-run.{run_id}",
                         "prefect.resource.name": run_name, "shopfloor.flow": flow_name},
               payload={"flow": flow_name, "run": run_name, "state": state,
                        "message": message[:2000], "flow_run_id": str(run_id)})


def degraded(summary: Any, message: str) -> State:
    """A Completed state named ``Degraded`` carrying ``summary`` (part of the job undone);
    emits ``shopfloor.run.degraded``."""
    _emit_outcome(DEGRADED_EVENT, run_id(), *run_names(), DEGRADED, message)
    return Completed(name=DEGRADED, message=message, data=summary)


def report_failure(flow: Any, run: Any, state: State) -> None:
    """``on_failure`` hook of every flow: emits ``shopfloor.run.failed`` about the failed
    ``run`` that Prefect hands the hook."""
    _emit_outcome(FAILED_EVENT, run.id, flow.name, run.name, state.name or "Failed",
                  state.message or "")


ON_FAILURE = [report_failure]


def idle(summary: Any, message: str) -> State:
    """A Completed state named ``Idle`` carrying ``summary`` (nothing was due)."""
    return Completed(name=IDLE, message=message, data=summary)


def conclude(verdict: Verdict, summary: Any) -> Any:
    """Apply a run's :class:`~shopfloor.outcome.Verdict` to its summary: raise for
    ``failed`` (a :class:`DataIntegrityError` for an integrity stop), an ``Idle`` or
    ``Degraded`` state, a Completed state carrying the message, or the summary itself."""
    if verdict.kind == "failed":
        raise (DataIntegrityError if verdict.integrity else ShopfloorError)(verdict.message)
    if verdict.kind == "idle":
        return idle(summary, verdict.message)
    if verdict.kind == "degraded":
        return degraded(summary, verdict.message)
    return Completed(message=verdict.message, data=summary) if verdict.message else summary


def emit(event: str, resource_id: str, payload: dict[str, Any] | None = None,
         **labels: str) -> None:
    """Emit ``event`` about ``resource_id`` (e.g. ``shopfloor.device.line1-plc``).

    The flow run is added as a related resource by Prefect. Extra ``labels`` go on the
    resource, so an automation can match on them (``shopfloor.district``...).
    """
    emit_event(event=event, resource={"prefect.resource.id": resource_id, **labels},
               payload=payload or {})
