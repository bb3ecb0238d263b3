"""The JSON fields compaction sees, as tags of the registry (``tags``).

Each claim's unioned schema names the fields its records carry; every field but the
time (``heartbeat``) and the columns compaction owns becomes a tag of the stream's
district, so the lake's measures have ids beside the captured and historian tags. The
registry's upsert makes a field seen again (by every later claim) change nothing.
"""

from collections.abc import Mapping

from shopfloor.compaction.sql import OWN_COLUMNS, VERDICT_COLUMNS
from shopfloor.tags.registry import TagInfo

NOT_TAGS = frozenset({"heartbeat", *OWN_COLUMNS, *VERDICT_COLUMNS})


def field_device(district: str) -> str:
    """The registry's device of a district's JSON stream."""
    return f"json:{district}" if district else "json"


def field_tags(fields: Mapping[str, str], district: str) -> list[TagInfo]:
    """The registry entries of the record fields ``name -> DuckDB type``, by name."""
    device = field_device(district)
    return [TagInfo(name=name, device=device, location=None, unit=None,
                    data_type=typ.lower(), description=None, source_name=name)
            for name, typ in sorted(fields.items()) if name not in NOT_TAGS]
