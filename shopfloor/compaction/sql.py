"""The compaction SELECT: JSON records -> normalised heartbeat, ``datetime_wita``, partitions.

Heartbeats come in seconds, milliseconds, microseconds or nanoseconds since the epoch
(whatever the device firmware sends); as in the seed, the unit is told from the
magnitude. A record whose heartbeat is missing, not numeric, or outside 1970-2100 gets
``hiveperiod = NULL``: it lands in a separate staging partition and is quarantined, not
published.
"""

from collections.abc import Mapping

# Output columns the compaction owns; a record field of the same name is replaced.
OWN_COLUMNS = ("source_file", "datetime_wita", "hiveperiod", "dstrct_code")
PATH_COLUMN = "__shopfloor_path"
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                 "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE")
MAX_EPOCH_US = 4102444800 * 10**6  # 2100-01-01: later "heartbeats" are garbage

READ_JSON = (f"read_json($files, format='auto', records='true', union_by_name=true, "
             f"filename='{PATH_COLUMN}')")


def heartbeat_expression(column_type: str) -> str:
    """The heartbeat as DOUBLE, NULL when it is not a number (string numbers are accepted)."""
    if column_type.upper() in NUMERIC_TYPES or column_type.upper().startswith("DECIMAL"):
        return "CAST(heartbeat AS DOUBLE)"
    return "TRY_CAST(trim(CAST(heartbeat AS VARCHAR), '\"') AS DOUBLE)"


EPOCH_US = """CASE
        WHEN __hb < 1e11 THEN __hb * 1e6   -- seconds
        WHEN __hb < 1e14 THEN __hb * 1e3   -- milliseconds
        WHEN __hb < 1e17 THEN __hb         -- microseconds
        ELSE __hb / 1e3                    -- nanoseconds
    END"""


def compaction_select(columns: Mapping[str, str]) -> str:
    """The SELECT over the claimed files; ``columns`` is the unioned schema (name -> type).

    Parameters: ``$files`` (URLs), ``$path_len`` (length of the location prefix before
    a key), ``$tz_us`` (offset of ``datetime_wita`` from UTC, microseconds) and
    ``$distrik`` (partition value for records without ``dstrct_code``).
    """
    replaced = [c for c in OWN_COLUMNS if c in columns]
    exclude = ", ".join(f'"{c}"' for c in replaced + [PATH_COLUMN])
    hb = heartbeat_expression(columns["heartbeat"])
    district = ('COALESCE(NULLIF(CAST("dstrct_code" AS VARCHAR), \'\'), $distrik)'
                if "dstrct_code" in columns else "$distrik")
    # Only constants go into the text: our own column names and expressions. Values
    # (file URLs, offsets, the distrik) are bound parameters.
    return f"""WITH src AS (
    SELECT *, {hb} AS __hb FROM {READ_JSON}
), norm AS (
    SELECT *, TRY_CAST({EPOCH_US} AS BIGINT) AS __us FROM src
)
SELECT * EXCLUDE ({exclude}, __hb, __us),
    CASE WHEN __us > 0 AND __us < {MAX_EPOCH_US}
         THEN make_timestamp(__us + $tz_us) END AS datetime_wita,
    substr({PATH_COLUMN}, $path_len + 1) AS source_file,
    CASE WHEN __us > 0 AND __us < {MAX_EPOCH_US}
         THEN strftime(make_timestamp(__us + $tz_us), '%Y-%m-%d') END AS hiveperiod,
    {district} AS dstrct_code
FROM norm"""  # noqa: S608


def describe_sql() -> str:
    """The unioned schema of the claimed files (``$files``): name and type per column."""
    return f"DESCRIBE SELECT * FROM {READ_JSON}"  # noqa: S608


def probe_sql() -> str:
    """Parse one object completely (``$files`` = one URL); fails on any malformed record."""
    return f"SELECT count(*) FROM {READ_JSON}"  # noqa: S608
