"""The tests' Prefect API: Prefect's own test harness, on a PostgreSQL database.

``prefect.testing.utilities.prefect_test_harness`` always puts its API on SQLite. Under
the suite's load (a flow's task runs, its heartbeats, artifacts and events written at
once) a write there sometimes waited out SQLite's whole 60 s busy timeout: in one run
of ``test_hourly_flow.py`` three of its 17 tests took 65 s instead of 2-7. This is the
same harness (a subprocess API server, the client pointed at it, the log and event
workers drained at the end) with the server's database a PostgreSQL one, where writers
lock rows, not the file.
"""

import inspect
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import prefect.context
import prefect.settings
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.server.api.server import SubprocessASGIServer
from prefect.utilities.asyncutils import run_coro_as_sync
from sqlalchemy.engine import make_url


def asyncpg_url(url: str) -> str:
    """``url`` with the driver Prefect's server uses for PostgreSQL."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(
        hide_password=False)


@contextmanager
def postgres_prefect_harness(database_url: str, port: int,
                             startup_timeout: int = 120) -> Iterator[None]:
    """Prefect's test harness with its API server on ``database_url`` (an empty
    PostgreSQL database; the server creates its tables) listening on ``port``."""
    from prefect.server.database.dependencies import temporary_database_interface

    with ExitStack() as stack:
        stack.enter_context(temporary_database_interface())
        stack.enter_context(prefect.settings.temporary_settings(updates={
            prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL:
                asyncpg_url(database_url)}))
        server = SubprocessASGIServer(port=port)
        # Code that asks for the default server during a flow run gets this one, as in
        # Prefect's harness (prefect#21544), not a second unmanaged subprocess.
        prior = SubprocessASGIServer._instances.get(None)
        SubprocessASGIServer._instances[None] = server
        server.start(timeout=startup_timeout)
        try:
            stack.enter_context(prefect.settings.temporary_settings(
                updates={prefect.settings.PREFECT_API_URL: server.api_url}))
            stack.enter_context(prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()))
            yield
            run_coro_as_sync(_drain())
        finally:
            server.stop()
            if prior is not None:
                SubprocessASGIServer._instances[None] = prior
            else:
                SubprocessASGIServer._instances.pop(None, None)


async def _drain() -> None:
    """Send what the log and event workers still hold before the server stops."""
    try:
        result = APILogWorker.instance().drain()
        if inspect.isawaitable(result):
            await result
    except RuntimeError:  # never started
        pass
    result = EventsWorker.drain_all()
    if inspect.isawaitable(result):
        await result
