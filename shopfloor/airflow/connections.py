"""Airflow connections as Airflow writes them: ``AIRFLOW_CONN_<ID>`` variables (URI or
JSON) and the files of ``airflow connections export`` (JSON, YAML, ``.env``).

Plain Python, no Airflow needed. The URI rules are Airflow's (``Connection._parse_from_uri``):
``conn-type://login:password@host:port/schema?extra``, every part URL-encoded; the scheme
``postgresql`` means ``postgres`` and ``-`` in a scheme means ``_``; the query is the
``extra`` (one key ``__extra__`` holds it as a JSON string, else each pair is a key). In
the JSON form and in export files a connection is ``{"conn_type", "host", "login",
"password", "schema", "port", "extra"}``, ``extra`` a JSON string or an object.
Secrets stay in their fields: no message here ever shows a URI or a value.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from shopfloor.errors import ShopfloorError, UserError

ENV_PREFIX = "AIRFLOW_CONN_"
EXTRA_KEY = "__extra__"


@dataclass(frozen=True)
class AirflowConnection:
    """One Airflow connection; ``password`` and ``extra`` never appear in its repr."""

    conn_id: str
    conn_type: str
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Unreadable:
    """A connection that could not be parsed, and why (never its value)."""

    conn_id: str
    reason: str


def normalise_conn_type(conn_type: str) -> str:
    """Airflow's spelling of a type: ``postgresql`` is ``postgres``, ``-`` is ``_``."""
    conn_type = conn_type.strip().lower()
    return "postgres" if conn_type == "postgresql" else conn_type.replace("-", "_")


def parse_extra(extra: Any, conn_id: str) -> dict[str, Any]:
    """``extra`` as a mapping: a JSON object string, an object, or empty."""
    if extra in (None, ""):
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            raise UserError(f"{conn_id}: extra is not JSON") from None
    if not isinstance(extra, Mapping):
        raise UserError(f"{conn_id}: extra is not a JSON object")
    return dict(extra)


def _hostname(parts) -> str:  # noqa: ANN001 - a urllib SplitResult
    # As Airflow: a host with an encoded '/' (a socket path) is taken from the netloc.
    host = unquote(parts.hostname or "")
    if "/" in host:
        host = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]
        host = unquote(host)
    return host


def parse_uri(conn_id: str, uri: str) -> AirflowConnection:
    """A connection from Airflow's URI form (see the module docstring)."""
    uri = uri.strip()
    if uri.count("://") not in (1, 2):
        raise UserError(f"{conn_id}: not a connection URI (expected type://...)")
    scheme = urlsplit(uri).scheme
    if not scheme:
        raise UserError(f"{conn_id}: the URI has no connection type (type://...)")
    # 'type://proto://host' keeps the host's protocol (Airflow's host_with_protocol).
    with_protocol = uri.count("://") == 2
    rest = uri.replace(f"{scheme}://", "" if with_protocol else "//", 1)
    parts = urlsplit(rest)
    host = _hostname(parts)
    if with_protocol and parts.scheme:
        host = f"{parts.scheme}://{host}"
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"{conn_id}: the port in the URI is not a number") from None
    extra: dict[str, Any] = {}
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = parse_extra(query[EXTRA_KEY], conn_id) if EXTRA_KEY in query else query
    return AirflowConnection(
        conn_id=conn_id, conn_type=normalise_conn_type(scheme), host=host or None,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(parts.path[1:]) or None, port=port, extra=extra)


def _port(value: Any, conn_id: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{conn_id}: port is not a number") from None


def from_fields(conn_id: str, fields: Mapping[str, Any]) -> AirflowConnection:
    """A connection from its fields (the JSON form, an export file's entry)."""
    conn_type = fields.get("conn_type")
    if not conn_type:
        raise UserError(f"{conn_id}: no conn_type")

    def text(name: str) -> str | None:
        value = fields.get(name)
        return None if value in (None, "") else str(value)

    return AirflowConnection(
        conn_id=conn_id, conn_type=normalise_conn_type(str(conn_type)), host=text("host"),
        login=text("login"), password=text("password"), schema=text("schema"),
        port=_port(fields.get("port"), conn_id), extra=parse_extra(fields.get("extra"), conn_id))


def parse_value(conn_id: str, value: Any) -> AirflowConnection:
    """A connection from a URI string, a JSON object string or a mapping of fields."""
    if isinstance(value, Mapping):
        return from_fields(conn_id, value)
    if not isinstance(value, str):
        raise UserError(f"{conn_id}: expected a URI or a JSON object")
    if value.lstrip().startswith("{"):
        try:
            fields = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{conn_id}: not valid JSON") from None
        return from_fields(conn_id, fields)
    return parse_uri(conn_id, value)


def _read(entries: Mapping[str, Any]) -> list[AirflowConnection | Unreadable]:
    found: list[AirflowConnection | Unreadable] = []
    for conn_id, value in entries.items():
        try:
            found.append(parse_value(conn_id, value))
        except ShopfloorError as exc:
            found.append(Unreadable(conn_id, str(exc).removeprefix(f"{conn_id}: ")))
    return found


def connections_from_env(env: Mapping[str, str]) -> list[AirflowConnection | Unreadable]:
    """Every ``AIRFLOW_CONN_<ID>`` of ``env``; the id is ``<ID>`` in lower case, as
    Airflow looks it up (``AIRFLOW_CONN_PG_FDW_V1_IOT`` is ``pg_fdw_v1_iot``)."""
    entries = {name[len(ENV_PREFIX):].lower(): value for name, value in sorted(env.items())
               if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX)}
    return _read(entries)


def _env_file(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UserError(f"line {number}: expected CONN_ID=URI or CONN_ID=JSON")
        entries[key.strip()] = value.strip()
    return entries


def connections_from_text(text: str, fmt: str) -> list[AirflowConnection | Unreadable]:
    """The connections of an export file's ``text`` in ``fmt`` (``json``, ``yaml``, ``env``):
    a mapping of conn id to fields (or to a URI), as ``airflow connections export`` writes."""
    try:
        if fmt == "env":
            entries: Any = _env_file(text)
        elif fmt == "yaml":
            entries = yaml.safe_load(text)
        else:
            entries = json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        raise UserError(f"the connections file is not valid {fmt.upper()}") from None
    if entries is None:
        return []
    if not isinstance(entries, Mapping):
        raise UserError("the connections file must map connection ids to connections")
    return _read({str(k): v for k, v in entries.items()})


def file_format(path: Path) -> str:
    """``json``, ``yaml`` or ``env`` from the file name (JSON when it says nothing)."""
    suffix = path.suffix.lower()
    return {".yaml": "yaml", ".yml": "yaml", ".env": "env"}.get(suffix, "json")


def connections_from_file(path: Path) -> list[AirflowConnection | Unreadable]:
    """The connections of an ``airflow connections export`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    return connections_from_text(text, file_format(path))
