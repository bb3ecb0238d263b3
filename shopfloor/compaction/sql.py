"""The compaction SELECT: JSON records -> normalised heartbeat, ``datetime_wita``, partitions.

Heartbeats come in seconds, milliseconds, microseconds or nanoseconds since the epoch
(whatever the device firmware sends); as in the seed, the unit is told from the
magnitude. A record whose heartbeat is missing, not numeric, or outside 1970-2100 gets
``hiveperiod = NULL``: it lands in a separate staging partition and is quarantined, not
published.

The schema is detected once, from a sample of every object (:func:`describe_sql`), and
then given to the reading ``COPY`` as explicit columns: DuckDB's own detection with
``union_by_name`` parses every object (up to 20,480 records each) a second time and
keeps those samples in memory, which for hundreds of objects costs more time and RAM
than the compaction itself.
"""

from collections.abc import Mapping

# Output columns the compaction owns; a record field of the same name is replaced.
OWN_COLUMNS = ("source_file", "datetime_wita", "hiveperiod", "dstrct_code")
# A landed line's verdict (shopfloor.modbus.landed): a ``rejected`` line is quarantined,
# never published; ``verdict`` and ``reasons`` say nothing about a published (valid)
# record and are left out of the Parquet (``rules_version`` stays: which rules passed it).
VERDICT_COLUMNS = ("verdict", "reasons")
PATH_COLUMN = "__shopfloor_path"
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                 "USMALLINT", "UINTEGER", "UBIGINT")
NUMERIC_TYPES = (*INTEGER_TYPES, "FLOAT", "DOUBLE")
MAX_EPOCH_US = 4102444800 * 10**6  # 2100-01-01: later "heartbeats" are garbage

_AUTO = "format='auto', records='true'"
READ_JSON_TYPED = (f"read_json($files, {_AUTO}, columns=$columns, "
                   f"filename='{PATH_COLUMN}')")


def merge_type(a: str | None, b: str) -> str:
    """The column type for values seen as ``a`` in some objects and ``b`` in others."""
    if a is None or a == b:
        return "JSON" if b == "NULL" else b
    if a in NUMERIC_TYPES and b in NUMERIC_TYPES:
        return "BIGINT" if a in INTEGER_TYPES and b in INTEGER_TYPES else "DOUBLE"
    return "JSON"  # JSON takes any value: numbers, strings, objects


def heartbeat_expression(column_type: str) -> str:
    """The heartbeat as DOUBLE, NULL when it is not a number (string numbers are accepted)."""
    if column_type.upper() in NUMERIC_TYPES or column_type.upper().startswith("DECIMAL"):
        return "TRY_CAST(heartbeat AS DOUBLE)"
    return "TRY_CAST(trim(CAST(heartbeat AS VARCHAR), '\"') AS DOUBLE)"


EPOCH_US = """CASE
        WHEN __hb < 1e11 THEN __hb * 1e6   -- seconds
        WHEN __hb < 1e14 THEN __hb * 1e3   -- milliseconds
        WHEN __hb < 1e17 THEN __hb         -- microseconds
        ELSE __hb / 1e3                    -- nanoseconds
    END"""


def compaction_select(columns: Mapping[str, str]) -> str:
    """The SELECT over the claimed files; ``columns`` is the unioned schema (name -> type).

    Parameters: ``$files`` (URLs), ``$columns`` (the schema as a name -> type map),
    ``$path_len`` (length of the location prefix before a key), ``$tz_us`` (offset of
    ``datetime_wita`` from UTC, microseconds) and ``$district`` (partition value for
    records without ``dstrct_code``).
    """
    replaced = [c for c in (*OWN_COLUMNS, *VERDICT_COLUMNS) if c in columns]
    exclude = ", ".join(f'"{c}"' for c in replaced + [PATH_COLUMN])
    hb = heartbeat_expression(columns["heartbeat"])
    # A rejected line gets no time, hence no hiveperiod: it lands in the invalid
    # staging partition with the unusable heartbeats and is quarantined from there.
    rejected = ("COALESCE(CAST(\"verdict\" AS VARCHAR) IN ('rejected', '\"rejected\"'), false)"
                if "verdict" in columns else "false")
    district = ('COALESCE(NULLIF(CAST("dstrct_code" AS VARCHAR), \'\'), $district)'
                if "dstrct_code" in columns else "$district")
    # Only constants go into the text: our own column names and expressions. Values
    # (file URLs, the schema, offsets, the district) are bound parameters.
    return f"""WITH src AS (
    SELECT *, {hb} AS __hb FROM {READ_JSON_TYPED}
), norm AS (
    SELECT *, TRY_CAST({EPOCH_US} AS BIGINT) AS __us FROM src
), stamped AS (
    SELECT *, CASE WHEN __us > 0 AND __us < {MAX_EPOCH_US} AND NOT ({rejected})
                   THEN make_timestamp(__us + $tz_us) END AS __wita
    FROM norm
)
SELECT * EXCLUDE ({exclude}, __hb, __us, __wita),
    __wita AS datetime_wita,
    substr({PATH_COLUMN}, $path_len + 1) AS source_file,
    CAST(__wita AS DATE) AS hiveperiod,  -- folder hiveperiod=YYYY-MM-DD; cheaper than strftime
    {district} AS dstrct_code
FROM stamped"""  # noqa: S608


def describe_sql(sample_size: int) -> str:
    """The unioned schema of ``$files`` from the first ``sample_size`` records of each
    (-1: every record)."""
    return (f"DESCRIBE SELECT * FROM read_json($files, {_AUTO}, union_by_name=true, "  # noqa: S608
            f"sample_size={int(sample_size)})")


def probe_sql() -> str:
    """Parse one object completely (``$files`` = one URL); fails on any malformed record."""
    return f"SELECT count(*) FROM read_json($files, {_AUTO}, sample_size=-1)"  # noqa: S608
