"""The one seam between our tasks and flows and Prefect's runtime.

What a task or a flow needs from Prefect lives here and nowhere else:

- **who is running**: :func:`run_id` (the flow run's id, or None) and :func:`run_token`
  (never empty: a fresh uuid outside a flow run), the only readers of
  ``prefect.runtime``; :func:`ended_runs`, which of some run tokens name flow runs the
  API knows to be over;
- **what time it is for the run**: :func:`logical_now` and :func:`scheduled_start`;
- **engines from blocks**: :func:`engine`, the one place a ``SqlAlchemyConnector`` block
  becomes an SQLAlchemy engine (its public ``connection_info`` and ``connect_args``),
  with one engine cache; :func:`storage` and :func:`tables` beside it;
- **concurrency slots**: :func:`slot`, :func:`limit_slots` and the warehouse limit;
- **task options**: :func:`transient` (every retrying task's ``retry_condition_fn``)
  and the presets :data:`RETRIED`, :data:`RETRIED_ONCE` and :data:`LIVE`, used as
  ``@task(name=..., **RETRIED, **LIVE)``.
"""

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment, flow_run
from prefect.states import State
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy import Engine

from blocks.resolve import connector_connect_args, connector_url, load_block, load_storage
from shopfloor.db.engine import make_engine
from shopfloor.db.schema import Tables, configured_tables
from shopfloor.db.types import utcnow
from shopfloor.errors import retryable
from shopfloor.storage import StorageLocation

# ---------------------------------------------------------------- the run


def run_id() -> str | None:
    """The current flow run's id (also inside its tasks); None outside a flow run (a
    plain function call, a unit test)."""
    current = flow_run.get_id()
    return str(current) if current else None


def run_token() -> str:
    """A token naming what this run owns (claims, buffered rows, landed objects): the
    flow run's id, or a fresh uuid outside a flow run, so it is never empty and two plain
    calls never share one."""
    return run_id() or str(uuid.uuid4())


def ended_runs(tokens: list[str]) -> list[str]:
    """Those of ``tokens`` that name flow runs in a final state (completed, failed,
    crashed, cancelled), asked of the API in one call. A token that is not a flow run
    of this API (a plain call's uuid, another server's run) is not among them: nobody
    can tell that it ended."""
    ids = []
    for token in tokens:
        try:
            ids.append(uuid.UUID(token))
        except ValueError:
            continue
    if not ids:
        return []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
    return sorted(str(r.id) for r in runs if r.state is not None and r.state.is_final())


def run_names() -> tuple[str, str]:
    """The running flow's name and the run's name (for events and messages)."""
    return str(flow_run.get_flow_name()), str(flow_run.get_name())


def _plain(moment: Any) -> datetime:
    # Prefect returns its own DateTime subclass; the domain works with plain datetimes.
    return datetime.fromtimestamp(moment.timestamp(), UTC)


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
    return utcnow() if scheduled is None else _plain(scheduled)


def scheduled_start() -> datetime | None:
    """The time a deployment's run was scheduled for; None for a plain call (which has
    no slot of its own: it starts now)."""
    if deployment.get_id() is None:
        return None
    return _plain(flow_run.get_scheduled_start_time())


# ---------------------------------------------------------------- engines and storage

ENGINE_CACHE_SIZE = 32
# The one engine cache, by (URL, connect_args): blocks naming the same database share a
# pool, and a block saved with new credentials (refresh-credentials) gets a new engine.
_ENGINES: OrderedDict[tuple[str, str], Engine] = OrderedDict()
# What each block of a flow run resolved to, by (run id, block name): a backfill's chunks
# reuse the first chunk's load instead of an API call per chunk and block. Scoped to the
# run, so a block saved in between reaches the next run.
_RUN_BLOCKS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
_RUN_BLOCKS_MAX = 256
_LOCK = threading.Lock()


def _connection(block: str) -> tuple[str, dict[str, Any]]:
    """(URL, connect_args) of the ``SqlAlchemyConnector`` block ``block``."""
    current = run_id()
    with _LOCK:
        known = _RUN_BLOCKS.get((current, block)) if current else None
    if known is not None:
        return known
    connector = load_block(block, SqlAlchemyConnector)
    found = connector_url(connector), connector_connect_args(connector)
    if current:
        with _LOCK:
            if len(_RUN_BLOCKS) >= _RUN_BLOCKS_MAX:
                _RUN_BLOCKS.clear()  # a long-lived process (serve) runs many flows
            _RUN_BLOCKS[(current, block)] = found
    return found


def engine(block: str) -> Engine:
    """An SQLAlchemy engine for the ``SqlAlchemyConnector`` block ``block``.

    The only place an engine is made from a block: the URL comes from the connector's
    ``connection_info`` and the driver keeps the block's ``connect_args``. Engines are
    cached per (URL, connect_args); an unknown block raises
    :class:`~shopfloor.errors.UserError` naming it, before anything connects.
    """
    url, connect_args = _connection(block)
    key = (url, json.dumps(connect_args, sort_keys=True, default=repr))
    with _LOCK:
        made = _ENGINES.get(key)
        if made is None:
            made = _ENGINES[key] = make_engine(url, connect_args=connect_args)
            if len(_ENGINES) > ENGINE_CACHE_SIZE:
                _ENGINES.popitem(last=False)  # still usable by whoever holds it
        else:
            _ENGINES.move_to_end(key)
        return made


def engines(*blocks: str) -> list[Engine]:
    """Engines for database blocks, in order; each name is loaded once, and an unknown
    block raises before anything connects."""
    by_name = {name: engine(name) for name in dict.fromkeys(blocks)}
    return [by_name[name] for name in blocks]


def storage(block: str) -> StorageLocation:
    """The storage location of the ``S3Bucket`` or ``LocalFileSystem`` block ``block``."""
    return load_storage(block)


def tables() -> Tables:
    """The tables as configured (schema and names from the environment, read now)."""
    return configured_tables()


# ---------------------------------------------------------------- concurrency slots

# The Prefect global concurrency limit shared by everything that writes the warehouse
# (hourly writes, each backfill chunk, master data sync); `shopfloor deploy` creates it.
WAREHOUSE_LIMIT = "shopfloor-warehouse-db"


@contextmanager
def slot(limit: str, timeout_seconds: float | None = None) -> Iterator[None]:
    """Hold one slot of the global concurrency limit ``limit``.

    ``strict=False``: where the limit does not exist (a plain Python call, a test
    server) Prefect logs a warning and the work goes ahead unlimited. Raises
    ``TimeoutError`` when no slot came within ``timeout_seconds``.
    """
    with concurrency(limit, occupy=1, timeout_seconds=timeout_seconds, strict=False):
        yield


def limit_slots(limit: str) -> int | None:
    """The slots of the global concurrency limit ``limit`` (None: it does not exist or
    is inactive). One API call: ask once per run, not per use."""
    try:
        with get_client(sync_client=True) as client:
            found = client.read_global_concurrency_limit_by_name(limit)
    except ObjectNotFound:
        return None
    return int(found.limit) if found.active else None


LIMITS_PAGE = 200  # global concurrency limits per API call when listing them


def active_limits(prefix: str = "") -> set[str]:
    """Names of the active global concurrency limits starting with ``prefix``: a call
    per :data:`LIMITS_PAGE` limits, however many names are then looked up (a run of
    hundreds of devices asks once, not once per gateway)."""
    names: set[str] = set()
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_global_concurrency_limits(limit=LIMITS_PAGE, offset=offset)
            names.update(g.name for g in page if g.active and g.name.startswith(prefix))
            if len(page) < LIMITS_PAGE:
                return names
            offset += LIMITS_PAGE


@contextmanager
def warehouse_slot() -> Iterator[None]:
    """Hold one slot of :data:`WAREHOUSE_LIMIT` while writing the warehouse."""
    with slot(WAREHOUSE_LIMIT):
        yield


def warehouse_slots() -> int | None:
    """The slots of :data:`WAREHOUSE_LIMIT` (None: the limit does not exist or is off).

    A backfill runs no more chunks at once than this: the others would only wait for a
    slot in Prefect's retry loop (``423 Locked``, retried after a randomised interval),
    leaving the slot idle between one chunk's release and the next one's retry.
    """
    return limit_slots(WAREHOUSE_LIMIT)


# ---------------------------------------------------------------- task options


def transient(task: Any, task_run: Any, state: State) -> bool:
    """Every retrying task's ``retry_condition_fn``: retry what may pass next time (a
    lost connection, a deadlock, an unreachable bucket), never a
    :class:`~shopfloor.errors.UserError` (the same input fails again) nor a
    :class:`~shopfloor.errors.DataIntegrityError` (a retry would only hide it)."""
    try:
        state.result(raise_on_failure=True)
    except Exception as exc:  # noqa: BLE001 - the failure decides
        return retryable(exc)
    return True


def retried(times: int = 2, delay_seconds: float = 5) -> dict[str, Any]:
    """Task options: retry ``times`` after ``delay_seconds`` what :func:`transient`
    allows."""
    return {"retries": times, "retry_delay_seconds": delay_seconds,
            "retry_condition_fn": transient}


RETRIED = retried()
"""A task whose work is safe to repeat: two retries, 5 s apart, of transient failures."""
RETRIED_ONCE = retried(1)
"""A longer task safe to repeat: one retry of a transient failure."""
LIVE = {"cache_policy": NO_CACHE}
"""A task that acts on the world or takes live objects (claims, files, sessions): its
result is never taken from a cache."""
