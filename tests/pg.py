"""The one throwaway PostgreSQL database of the tests: created on the test server with a
random name, handed over as a URL, dropped (connections and all) at the end."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def throwaway_database(server_url: str, prefix: str = "shopfloor_test") -> Iterator[str]:
    """A fresh database ``<prefix>_<random>`` on ``server_url``'s server; yields its URL
    (password kept) and drops it on exit, even if a test still holds connections."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    # Pre-ping: a test may stop and start the server (the soak's warehouse), which kills
    # the pooled connection the drop at the end would otherwise use.
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))  # test-made name: no parameter
        try:
            yield make_url(server_url).set(database=name).render_as_string(
                hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
