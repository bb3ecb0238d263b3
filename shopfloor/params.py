"""Parameter types for flow signatures that the Prefect server itself can check.

Prefect validates run parameters against the flow's JSON schema before it creates a
run (``enforce_parameter_schema``), but its server-side check ignores ``format``, so a
``datetime`` parameter would accept ``"not-a-date"`` and fail only inside the run.
A ``pattern`` is always checked: these types add one, so a malformed date from the UI
or ``prefect deployment run --param`` is refused up front with the field named.
"""

from datetime import date, datetime
from typing import Annotated

from pydantic import Field

ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
ISO_DATETIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)

IsoDate = Annotated[date, Field(json_schema_extra={"pattern": ISO_DATE_PATTERN})]
"""A calendar day, ``YYYY-MM-DD``."""

IsoDateTime = Annotated[datetime, Field(json_schema_extra={"pattern": ISO_DATETIME_PATTERN})]
"""An ISO 8601 timestamp, ``YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|±HH:MM]``."""
