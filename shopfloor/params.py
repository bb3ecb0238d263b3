"""Parameter types for flow signatures that the Prefect server itself can check.

Prefect validates run parameters against the flow's JSON schema before it creates a
run (``enforce_parameter_schema``), so a limit written as a type is refused up front,
with the field named, and the UI form shows it. The server-side check ignores
``format``, so a ``datetime`` parameter would accept ``"not-a-date"`` and fail only
inside the run; a ``pattern`` is always checked: these types add one.

What cannot be a type (rules across fields, identifier safety against a database) is
one ``check_parameters(...)`` per flow, called by the flow and by the CLI.
"""

from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import Field

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

RamLimit = Annotated[str, Field(pattern=RAM_LIMIT_PATTERN)]
"""A memory size such as ``10GB``, ``512MiB``."""

DistrictCode = Annotated[str, Field(pattern=DISTRICT_PATTERN)]
"""A district code (``distrik`` in the seed's registry, ``dstrct_code`` in its records)."""

StoragePrefix = Annotated[str, Field(pattern=PREFIX_PATTERN)]
"""A folder inside a storage location, e.g. ``datalog_v2`` or ``lake/sensors``."""

OptionalStoragePrefix = Annotated[str, Field(pattern=OPTIONAL_PREFIX_PATTERN)]
"""A folder inside a storage location, or ``""`` for all of it."""

BlockName = Annotated[str, Field(pattern=BLOCK_NAME_PATTERN)]
"""The name of a saved Prefect block."""
