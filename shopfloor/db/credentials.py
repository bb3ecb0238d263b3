"""Database credentials from a secret in the shape AWS RDS rotation writes.

An RDS-managed or rotated secret is a JSON object
``{"engine": "postgres", "host": ..., "port": 5432, "username": ..., "password": ...,
"dbname": ...}`` (other keys, e.g. ``dbInstanceIdentifier`` or ``masterarn``, are
ignored). :func:`parse_database_secret` reads it, :func:`rotated_url` merges it into the
URL a connector block holds, :func:`check_credentials` proves the result connects
before anything is saved. No message here ever contains a secret's value.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL

from shopfloor.db.engine import check_connection, make_engine
from shopfloor.errors import UserError
from shopfloor.outcome import COMPLETED, Verdict

# RDS's ``engine`` values -> the driver a new block gets (an existing block keeps its own).
ENGINE_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "aurora-postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "aurora-mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlserver": "mssql+pymssql",
}
# SQLAlchemy backend of each driver: what an existing block's URL is compared with.
_BACKENDS = {"postgresql+psycopg2": "postgresql", "mysql+pymysql": "mysql",
             "mssql+pymssql": "mssql"}
# How each DBAPI is told to give up connecting (a wrong host must not hang the check).
_TIMEOUT_ARGS = {"psycopg2": "connect_timeout", "pymysql": "connect_timeout",
                 "pymssql": "login_timeout"}


@dataclass(frozen=True)
class DatabaseSecret:
    """Connection fields read from a secret; ``password`` is left out of ``repr``."""

    username: str
    password: str = field(repr=False)
    engine: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None


def parse_database_secret(value: str | bytes, secret_id: str) -> DatabaseSecret:
    """The RDS-shaped JSON ``value`` of secret ``secret_id`` as a :class:`DatabaseSecret`.

    Raises:
        ShopfloorError: not a JSON object, a missing ``username``/``password``, a port that
            is not a number or an unknown engine; the message names keys, never values.
    """
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"secret {secret_id!r} is not JSON: expected the RDS shape "
                             '{"engine", "host", "port", "username", "password", '
                             '"dbname"}') from None
    if not isinstance(data, dict):
        raise UserError(f"secret {secret_id!r} is not a JSON object")
    missing = [k for k in ("username", "password") if not isinstance(data.get(k), str)
               or not data[k]]
    if missing:
        raise UserError(f"secret {secret_id!r} has no {' or '.join(missing)}")
    engine = _optional_str(data, "engine", secret_id)
    if engine is not None and engine.lower() not in ENGINE_DRIVERS:
        raise UserError(f"secret {secret_id!r} has engine {engine!r}: shopfloor knows "
                             + ", ".join(sorted(ENGINE_DRIVERS)))
    return DatabaseSecret(
        username=data["username"], password=data["password"],
        engine=engine.lower() if engine else None,
        host=_optional_str(data, "host", secret_id), port=_port(data.get("port"), secret_id),
        dbname=_optional_str(data, "dbname", secret_id))


def _optional_str(data: dict, key: str, secret_id: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"secret {secret_id!r}: {key} must be a string")
    return value


def _port(value: object, secret_id: str) -> int | None:
    # RDS writes the port as a number; hand-made secrets often hold it as a string.
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not str(value).isdigit() or not 0 < int(value) < 65536:
        raise UserError(f"secret {secret_id!r}: port must be a number from 1 to 65535")
    return int(value)


def rotated_url(current: URL | None, secret: DatabaseSecret, secret_id: str) -> URL:
    """``current`` with the secret's user, password and (when given) host, port, database.

    The current URL's driver and query (``sslmode``...) are kept. Without a current URL
    (a block that does not exist yet) the secret must name its engine and host.

    Raises:
        ShopfloorError: the secret's engine is another database kind than the block's,
            or a new block cannot be built from the secret alone.
    """
    driver = ENGINE_DRIVERS.get(secret.engine or "")
    if current is None:
        if driver is None or not secret.host:
            raise UserError(f"secret {secret_id!r} needs engine and host to create a "
                                 "new block")
        return URL.create(driver, username=secret.username, password=secret.password,
                          host=secret.host, port=secret.port, database=secret.dbname)
    if driver is not None and _BACKENDS[driver] != current.get_backend_name():
        raise UserError(f"secret {secret_id!r} is for engine {secret.engine!r} but the "
                             f"block is a {current.get_backend_name()} database")
    return current.set(
        username=secret.username, password=secret.password,
        host=secret.host or current.host, port=secret.port or current.port,
        database=secret.dbname or current.database)


def check_credentials(url: URL, name: str, timeout_seconds: int = 10,
                      connect_args: Mapping[str, Any] | None = None) -> None:
    """Open a connection with ``url`` and run ``SELECT 1``; the engine is disposed after.

    ``connect_args`` are the block's driver arguments (TLS files...), so the check
    connects the way the flows will; a connect timeout is added where the driver has one.

    Raises:
        ShopfloorError: one line naming ``name`` and the reason, the password masked.
    """
    connect_args = dict(connect_args or {})
    if arg := _TIMEOUT_ARGS.get(url.get_driver_name()):
        connect_args[arg] = timeout_seconds
    engine = make_engine(url.render_as_string(hide_password=False), connect_args=connect_args)
    try:
        check_connection(engine, name)
    finally:
        engine.dispose()


UPDATED, CREATED, UNCHANGED, FAILED = "updated", "created", "unchanged", "failed"


@dataclass(frozen=True)
class RefreshResult:
    """What happened to one block; ``detail`` is a URL with the password hidden or the
    reason it failed, never a secret."""

    block: str
    secret: str
    result: str
    detail: str


def refresh_verdict(results: Sequence[RefreshResult]) -> Verdict:
    """A credential refresh's final state: Failed when a block kept its old credentials
    (after the others were done), Idle when every block already held its secret's."""
    failed = [r for r in results if r.result == FAILED]
    if failed:
        return Verdict("failed", f"{len(failed)} of {len(results)} block(s) kept their old "
                       "credentials: " + "; ".join(f"{r.block}: {r.detail}" for r in failed))
    if all(r.result == UNCHANGED for r in results):
        return Verdict("idle", "every block already holds its secret's credentials")
    return COMPLETED
