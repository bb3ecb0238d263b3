"""Parameter types for flow signatures that the Prefect server itself can check.

Prefect validates run parameters against the flow's JSON schema before it creates a
run (``enforce_parameter_schema``), so a limit written as a type is refused up front,
with the field named, and the UI form shows it. The server-side check ignores
``format``, so a ``datetime`` parameter would accept ``"not-a-date"`` and fail only
inside the run; a ``pattern`` is always checked: these types add one.

What cannot be a type (rules across fields, identifier safety against a database) is
one ``check_parameters(...)`` per flow, called by the flow and by the CLI.
"""

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_type_hints
from zoneinfo import available_timezones

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from shopfloor.errors import UserError

ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
ISO_DATETIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
# A DuckDB memory size: a number and a unit, any case (B, KB, KiB, MB, ... TiB).
RAM_LIMIT_PATTERN = r"^\s*\d+(\.\d+)?\s*([KkMmGgTt][Ii]?)?[Bb]\s*$"
# A district code as the seed's registry and partitions hold it (``BRCB``, ``D01``).
DISTRICT_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# A folder inside a bucket or folder: safe segments separated by '/', none '.' or '..'.
# No look-ahead: pydantic-core's regex engine (Rust) refuses look-arounds.
_SEGMENT = r"(\.{0,2}[A-Za-z0-9_=-][A-Za-z0-9_.=-]*|\.{3}[A-Za-z0-9_.=-]*)"
PREFIX_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*/?$"
OPTIONAL_PREFIX_PATTERN = r"^$|" + PREFIX_PATTERN
# A Prefect block document name (lower-case letters, digits and dashes).
BLOCK_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"

IsoDate = Annotated[date, Field(json_schema_extra={"pattern": ISO_DATE_PATTERN})]
"""A calendar day, ``YYYY-MM-DD``."""

IsoDateTime = Annotated[datetime, Field(json_schema_extra={"pattern": ISO_DATETIME_PATTERN})]
"""An ISO 8601 timestamp, ``YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|±HH:MM]``."""

TIME_ZONES: tuple[str, ...] = tuple(sorted(available_timezones()))
TimeZone = Literal[TIME_ZONES]  # type: ignore[valid-type]
"""An IANA time zone name (``UTC``, ``Asia/Makassar``): an ``enum`` in the schema, so the
server refuses a misspelt zone and the UI offers a list."""



def pattern_type(pattern: str, hint: str) -> Any:
    """A string limited by ``pattern``: in the JSON schema (the server and the UI form
    check it) and, in Python, refused with ``'<value>' <hint>`` instead of the raw
    regular expression. Python's ``re`` checks it, so look-arounds are allowed."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.search(value):
            # The message goes through the context: braces in it are not placeholders.
            raise PydanticCustomError("invalid_value", "{message}",
                                      {"message": f"{value!r} {hint}"})
        return value

    return Annotated[str, Field(json_schema_extra={"pattern": pattern}), AfterValidator(check)]


RamLimit = pattern_type(RAM_LIMIT_PATTERN,
                        "is not a memory size: use e.g. '1GB', '512MB' or '10GiB'")
"""A memory size such as ``10GB``, ``512MiB``."""

DistrictCode = pattern_type(DISTRICT_PATTERN,
                            "is not a district code: use 1-32 letters, digits, '_' or '-'")
"""A district code (``distrik`` in the seed's registry, ``dstrct_code`` in its records)."""

_FOLDER_HINT = ("use folder names of letters, digits, '_', '-', '.', '=' separated by '/' "
                "(no '.' or '..', no leading '/')")
StoragePrefix = pattern_type(PREFIX_PATTERN, "is not a folder inside the storage: " + _FOLDER_HINT)
"""A folder inside a storage location, e.g. ``datalog_v2`` or ``lake/sensors``."""

OptionalStoragePrefix = pattern_type(OPTIONAL_PREFIX_PATTERN,
                                     "is not a folder inside the storage: " + _FOLDER_HINT)
"""A folder inside a storage location, or ``""`` for all of it."""

BlockName = pattern_type(BLOCK_NAME_PATTERN,
                         "is not a block name: use lower-case letters, digits and dashes")
"""The name of a saved Prefect block."""


def check_typed(fn: Callable[..., Any], **values: Any) -> None:
    """Check ``values`` against the parameter types of ``fn`` (a flow or its function),
    as the Prefect server does for a deployment run: what a CLI runs before it starts
    a flow, so the limits are written once, in the signature.

    Raises:
        ShopfloorError: one line, ``<name>: <what is wrong>`` for every bad value.
    """
    hints = get_type_hints(getattr(fn, "fn", fn), include_extras=True)
    problems: list[str] = []
    for name, value in values.items():
        try:
            TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as exc:
            problems += [_problem(name, error) for error in exc.errors()]
    if problems:
        raise UserError("; ".join(problems))


def _problem(name: str, error: Any) -> str:
    where = ".".join([name, *(str(p) for p in error["loc"])])
    if error["type"] == "invalid_value":  # ours (pattern_type): names the value already
        return f"{where}: {error['msg']}"
    if error["type"] == "literal_error":  # an enum: its message lists every zone
        return f"{where}: {error['input']!r} is not an allowed value"
    return f"{where}: {error['msg']}, got {error['input']!r}"

