"""Run settings that change without a deploy: parameter defaults from Prefect Variables.

A flow parameter left empty (``None``) takes the value of a Prefect Variable when one is
set (``prefect variable set NAME '<json>'``, or the UI's Variables page), else the flow's
own default. A value passed to the run always wins. The variables shopfloor reads:

- ``shopfloor_credential_secrets``: ``{"<SqlAlchemyConnector block>": "<secret name or
  ARN>", ...}`` for ``refresh-credentials`` (default: none, the run is Idle).
- ``shopfloor_compaction_districts``: ``["BRCB", ...]``, the districts ``s3-compaction``
  serves when no ``distrik`` is passed (default: every district with a backlog).
"""

from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.variables import Variable
from pydantic import TypeAdapter, ValidationError

from shopfloor.errors import ShopfloorError

CREDENTIAL_SECRETS = "shopfloor_credential_secrets"
COMPACTION_DISTRICTS = "shopfloor_compaction_districts"

T = TypeVar("T")


def from_variable(name: str, passed: T | None, default: T, type_: Any) -> T:
    """``passed`` if given, else Prefect Variable ``name`` checked against ``type_``,
    else ``default``.

    Raises:
        ShopfloorError: the variable is set to a value ``type_`` refuses (one line; a
            bad variable must fail the run, not silently fall back to the default).
    """
    if passed is not None:
        return passed
    value = Variable.get(name, default=None)
    if value is None:
        return default
    try:
        checked = TypeAdapter(type_).validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
            for e in exc.errors())
        raise ShopfloorError(f"Prefect Variable {name!r} is not valid: {problems}") from None
    try:
        get_run_logger().info("using Prefect Variable %r", name)
    except MissingContextError:  # called outside a run (a CLI check): nothing to log to
        pass
    return checked
