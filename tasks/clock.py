"""The logical time of a run: what "now" means for a window a flow computes itself."""

from datetime import UTC, datetime

from prefect.runtime import flow_run

from shopfloor.db.types import utcnow


def logical_now() -> datetime:
    """The time this run stands for, as an aware UTC datetime.

    A scheduled (deployment) run gets the time it was scheduled for
    (``prefect.runtime.flow_run.scheduled_start_time``), so a run that a stopped worker
    starts three hours late still processes the window of its own slot. A flow called
    from Python gets its run's creation time, which is now; outside any flow run (or if
    the run cannot be read) it is the wall clock.
    """
    try:
        scheduled = flow_run.scheduled_start_time
    except Exception:  # no API to ask: a plain call, the wall clock is its time
        scheduled = None
    if scheduled is None:
        return utcnow()
    # Prefect returns its own DateTime subclass; the domain works with plain datetimes.
    return datetime.fromtimestamp(scheduled.timestamp(), UTC)
