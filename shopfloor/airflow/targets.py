"""Which block an Airflow connection becomes, under which name; or why it cannot.

- ``postgres``, ``mysql``, ``mssql`` -> ``SqlAlchemyConnector`` with the drivers shopfloor
  installs (``postgresql+psycopg2``, ``mysql+pymysql``, ``mssql+pymssql``); Airflow's
  ``schema`` field is the database. Extra keys the driver takes as connect arguments
  (``sslmode``, ``charset``, ...) become the URL query; other extra keys are named as
  ignored (their values are never shown).
- ``aws`` -> ``AwsCredentials``: keys from login/password (or the extra's
  ``aws_access_key_id``/``aws_secret_access_key``), ``region_name``, ``endpoint_url``,
  ``aws_session_token``, ``profile_name``, ``role_arn`` (assume role) from the extra.
- anything else is refused with one line.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shopfloor.airflow.connections import AirflowConnection, Unreadable
from shopfloor.errors import ShopfloorError, UserError

DRIVERS = {"postgres": "postgresql+psycopg2", "mysql": "mysql+pymysql",
           "mssql": "mssql+pymssql"}
AWS_TYPES = ("aws", "s3")  # "s3" is the Amazon provider's old name for the same thing
QUERY_EXTRAS = {
    "postgres": {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout",
                 "application_name", "options", "target_session_attrs", "keepalives",
                 "keepalives_idle", "keepalives_interval", "keepalives_count"},
    "mysql": {"charset", "connect_timeout", "unix_socket"},
    "mssql": {"charset", "tds_version", "login_timeout", "timeout", "appname"},
}
AWS_EXTRAS = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token",
              "region_name", "endpoint_url", "profile_name", "role_arn", "assume_role_kwargs",
              "assume_role_method", "verify"}
BLOCK_NAME = re.compile(r"^[a-z0-9-]{1,100}$")  # what Prefect accepts as a block name
SUPPORTED = "postgres, mysql, mssql, aws"


@dataclass(frozen=True)
class DatabaseTarget:
    """A ``SqlAlchemyConnector``'s connection components (``password`` kept out of repr)."""

    driver: str
    host: str
    port: int | None
    database: str | None
    username: str | None
    password: str | None = field(repr=False)
    query: Mapping[str, str] = field(default_factory=dict)

    def shown(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.driver} host {self.host}{port} database {self.database or '-'}"


@dataclass(frozen=True)
class AwsTarget:
    """An ``AwsCredentials`` block's fields (secrets kept out of repr)."""

    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    session_token: str | None = field(repr=False)
    region: str | None
    endpoint_url: str | None
    profile_name: str | None = None
    role_arn: str | None = None
    assume_role_kwargs: Mapping[str, Any] = field(default_factory=dict)
    verify: bool | None = None

    def shown(self) -> str:
        keys = ("keys set" if self.access_key_id else
                f"profile {self.profile_name}" if self.profile_name else "default chain")
        role = ", assume role" if self.role_arn else ""
        return (f"region {self.region or 'default'} endpoint {self.endpoint_url or 'AWS'}, "
                f"{keys}{role}")


@dataclass(frozen=True)
class BlockPlan:
    """One block to save: its type and name, what it holds, the extras left out."""

    conn_id: str
    block_name: str
    block_type: str
    target: DatabaseTarget | AwsTarget
    ignored_extras: tuple[str, ...] = ()

    def line(self) -> str:
        """What the CLI prints: type, name, source, host/database; never a secret."""
        text = (f"{self.block_type:<20} {self.block_name:<28} <- {self.conn_id}: "
                f"{self.target.shown()}")
        if self.ignored_extras:
            text += f" (extra ignored: {', '.join(self.ignored_extras)})"
        return text


@dataclass(frozen=True)
class Refusal:
    """A connection that becomes no block, and the one line that says why."""

    conn_id: str
    reason: str

    def line(self) -> str:
        return f"refused {self.conn_id}: {self.reason}"


def default_block_name(conn_id: str) -> str:
    """``airflow-<conn_id>`` in Prefect's alphabet: lower case, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", conn_id.lower()).strip("-")
    return f"airflow-{slug}"[:100]


def _key(conn_id: str) -> str:
    # AIRFLOW_CONN_AWS_CREDS names 'aws_creds'; a map may spell it 'aws-creds'.
    return conn_id.lower().replace("-", "_")


def parse_name_map(items: Iterable[str]) -> dict[str, str]:
    """``["pg_fdw_v1_iot=shopfloor-source-db", ...]`` (``--map``) as conn id -> block name."""
    mapping: dict[str, str] = {}
    for item in items:
        conn_id, sep, name = (part.strip() for part in item.partition("="))
        if not sep or not conn_id or not name:
            raise UserError(f"--map {item!r}: expected CONN_ID=BLOCK_NAME")
        if not BLOCK_NAME.fullmatch(name):
            raise UserError(f"--map {item!r}: a block name is lower-case letters, digits "
                                 "and dashes")
        mapping[_key(conn_id)] = name
    return mapping


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def database_target(conn: AirflowConnection) -> tuple[DatabaseTarget, tuple[str, ...]]:
    """The connector's components and the extra keys it leaves out."""
    if not conn.host:
        raise UserError("no host")
    allowed = QUERY_EXTRAS[conn.conn_type]
    query = {k: _text(v) for k, v in conn.extra.items() if k in allowed and v is not None}
    ignored = tuple(sorted(k for k in conn.extra if k not in query))
    return DatabaseTarget(DRIVERS[conn.conn_type], conn.host, conn.port, conn.schema,
                          conn.login, conn.password, query), ignored


def _verify(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no")


def aws_target(conn: AirflowConnection) -> tuple[AwsTarget, tuple[str, ...]]:
    """The credentials' fields and the extra keys they leave out."""
    extra = conn.extra
    method = extra.get("assume_role_method")
    if method not in (None, "", "assume_role"):
        raise UserError(f"assume_role_method {method!r} has no AwsCredentials field "
                             "(only assume_role)")
    kwargs = extra.get("assume_role_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise UserError("assume_role_kwargs is not an object")
    target = AwsTarget(
        access_key_id=conn.login or extra.get("aws_access_key_id"),
        secret_access_key=conn.password or extra.get("aws_secret_access_key"),
        session_token=extra.get("aws_session_token"),
        region=extra.get("region_name"),
        endpoint_url=extra.get("endpoint_url"),
        profile_name=extra.get("profile_name"),
        role_arn=extra.get("role_arn"),
        assume_role_kwargs=dict(kwargs),
        verify=_verify(extra.get("verify")),
    )
    return target, tuple(sorted(k for k in extra if k not in AWS_EXTRAS))


def plan_one(conn: AirflowConnection, name: str) -> BlockPlan | Refusal:
    """The block ``conn`` becomes as ``name``, or a refusal with its reason."""
    try:
        if conn.conn_type in DRIVERS:
            target, ignored = database_target(conn)
            return BlockPlan(conn.conn_id, name, "SqlAlchemyConnector", target, ignored)
        if conn.conn_type in AWS_TYPES:
            target, ignored = aws_target(conn)
            return BlockPlan(conn.conn_id, name, "AwsCredentials", target, ignored)
    except ShopfloorError as exc:
        return Refusal(conn.conn_id, f"{conn.conn_type} connection: {exc}")
    return Refusal(conn.conn_id, f"connection type {conn.conn_type!r} has no shopfloor block "
                                 f"(supported: {SUPPORTED})")


def plan_blocks(connections: Iterable[AirflowConnection | Unreadable],
                names: Mapping[str, str], only: Iterable[str] = ()
                ) -> list[BlockPlan | Refusal]:
    """A plan or a refusal per connection (those in ``only``, if given), named by
    ``names`` (conn id -> block name, from :func:`parse_name_map`) or by default."""
    wanted = {_key(c) for c in only}
    plans: list[BlockPlan | Refusal] = []
    for conn in connections:
        if wanted and _key(conn.conn_id) not in wanted:
            continue
        if isinstance(conn, Unreadable):
            plans.append(Refusal(conn.conn_id, conn.reason))
            continue
        name = names.get(_key(conn.conn_id)) or default_block_name(conn.conn_id)
        plans.append(plan_one(conn, name))
    taken: dict[str, str] = {}
    for plan in plans:
        if isinstance(plan, BlockPlan):
            if plan.block_name in taken:
                raise UserError(f"connections {taken[plan.block_name]} and {plan.conn_id} "
                                     f"would both become block {plan.block_name!r}")
            taken[plan.block_name] = plan.conn_id
    return plans
