"""Check the extraction parameters and split a date window into monthly table slices.

The limits a type can state are the parameter types at the end of this module (the
flow's signature uses them); the rules across fields and the identifier checks are
:func:`check_parameters`.

The window is ``[start 00:00 UTC, end + 1 day 00:00 UTC)``: both dates are included,
so ``start == end`` extracts one day.
"""

import re
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from shopfloor.errors import UserError
from shopfloor.historian.tags import MAX_PATTERN_LENGTH
from shopfloor.identifiers import check_identifier
from shopfloor.params import pattern_type

PLACEHOLDERS = ("yyyy", "mm")
TABLE_PATTERN_CHARS = r"^[A-Za-z0-9_{}]+$"
_PATTERN_CHARS = re.compile(TABLE_PATTERN_CHARS)
# Folder names separated by '/': each of letters, digits, '_', '.', '-' and not only dots
# (so no '.' or '..'); no leading, trailing or doubled '/'. No look-ahead: pydantic's
# regex engine has none.
_SEGMENT = r"\.*[A-Za-z0-9_-][A-Za-z0-9_.-]*"
OUTPUT_PREFIX_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"
MASTER_PATTERN = (r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[\w.-]+:\d+(,[\w.-]+:\d+)*"
                  r"|yarn|k8s://\S+)$")


@dataclass(frozen=True)
class TableRead:
    """One table to read for a slice: its rows in ``[start_ms, end_ms)``.

    ``drvid`` is the Ignition driver that owns the table (from ``sqlth_partitions``); only
    the tags of that driver are read from it. ``None``: every selected tag (a table found
    by the name pattern).
    """

    table: str
    start_ms: int  # inclusive, epoch milliseconds UTC
    end_ms: int  # exclusive
    drvid: int | None = None

    def day_ranges(self, parts: int) -> list[tuple[int, int]]:
        """The read cut at UTC midnights into at most ``parts`` ranges (see
        :func:`day_ranges`)."""
        return day_ranges(self.start_ms, self.end_ms, parts)


@dataclass(frozen=True)
class MonthSlice:
    """The part of the window that falls in one month, and the table(s) that hold it.

    ``reads`` are the tables found through Ignition's ``sqlth_partitions``
    (:mod:`shopfloor.historian.partitions`); empty means the one table ``table`` named by
    the pattern, over the whole slice. ``month`` labels the slice (``YYYY-MM``, or the
    day ``YYYY-MM-DD`` of a re-checked day).
    """

    table: str
    month: str  # "YYYY-MM"
    start_ms: int  # inclusive, epoch milliseconds UTC
    end_ms: int  # exclusive
    reads: tuple[TableRead, ...] = ()

    @property
    def table_reads(self) -> tuple[TableRead, ...]:
        """What to read for the slice: the partitions' reads, or the pattern's table."""
        return self.reads or (TableRead(self.table, self.start_ms, self.end_ms),)

    @property
    def dates(self) -> list[str]:
        """Every UTC date (``YYYY-MM-DD``) of the slice: the date partitions it owns."""
        day = _from_ms(self.start_ms).date()
        last = _from_ms(self.end_ms - 1).date()
        out = []
        while day <= last:
            out.append(day.isoformat())
            day += timedelta(days=1)
        return out

    def day_ranges(self, parts: int) -> list[tuple[int, int]]:
        """The slice cut at UTC midnights into at most ``parts`` contiguous ``[lo, hi)`` ranges
        (see :func:`day_ranges`)."""
        return day_ranges(self.start_ms, self.end_ms, parts)


def day_ranges(start_ms: int, end_ms: int, parts: int) -> list[tuple[int, int]]:
    """``[start_ms, end_ms)`` cut at UTC midnights into at most ``parts`` contiguous ranges.

    Day-aligned ranges keep every ``(tag, date)`` in one Spark partition, so a date
    partition gets one file instead of one per read range that crosses it.
    """
    first = _from_ms(start_ms).date()
    days = (_from_ms(end_ms - 1).date() - first).days + 1
    parts = max(1, min(parts, days))
    bounds = [start_ms]
    for i in range(1, parts):
        day = first + timedelta(days=(i * days) // parts)
        bounds.append(max(start_ms, epoch_ms(day)))
    bounds.append(end_ms)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def epoch_ms(day: date) -> int:
    """Milliseconds since the epoch of ``day`` at 00:00 UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def check_table_pattern(pattern: str) -> str:
    """Accept only identifier characters and the ``{yyyy}`` / ``{mm}`` placeholders."""
    if not isinstance(pattern, str) or not _PATTERN_CHARS.fullmatch(pattern):
        raise UserError(
            f"invalid table_pattern {pattern!r}: use letters, digits, underscores and the "
            "placeholders {yyyy} and {mm} only"
        )
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(pattern)
                  if f is not None or spec or conv]
    except ValueError as exc:
        raise UserError(f"invalid table_pattern {pattern!r}: {exc}") from None
    unknown = sorted(set(fields) - set(PLACEHOLDERS))
    if unknown:
        raise UserError(
            f"invalid table_pattern {pattern!r}: unknown placeholder(s) {unknown}; "
            "only {yyyy} and {mm} exist"
        )
    check_identifier(table_name(pattern, 2000, 1), "historian table")
    return pattern


def table_name(pattern: str, year: int, month: int) -> str:
    """The table of one month, e.g. ``sqlt_data_1_2026_01``; checked strictly."""
    name = pattern.format(yyyy=f"{year:04d}", mm=f"{month:02d}")
    return check_identifier(name, "historian table")


def resolve_window(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The window to extract: ``start``/``end`` when given, else yesterday (one day).

    A scheduled run (prefect.yaml's daily 02:00 deployment) passes neither and gets the
    day before ``today``; giving only one of them is an error.
    """
    if start is None and end is None:
        yesterday = today - timedelta(days=1)
        return yesterday, yesterday
    if start is None or end is None:
        raise UserError("give both start and end, or neither (yesterday)")
    return start, end


def check_window(start: date, end: date) -> None:
    """Reject an end before the start (the end date is included)."""
    if end < start:
        raise UserError(f"end {end} is before start {start}")


def plan_months(start: date, end: date, pattern: str) -> list[MonthSlice]:
    """One slice per month that overlaps ``[start, end]``, in order."""
    check_window(start, end)
    check_table_pattern(pattern)
    window_end = end + timedelta(days=1)
    slices = []
    year, month = start.year, start.month
    while date(year, month, 1) < window_end:
        nxt = date(year + month // 12, month % 12 + 1, 1)
        lo, hi = max(start, date(year, month, 1)), min(window_end, nxt)
        slices.append(MonthSlice(table_name(pattern, year, month), f"{year:04d}-{month:02d}",
                                 epoch_ms(lo), epoch_ms(hi)))
        year, month = nxt.year, nxt.month
    return slices


def check_spark_conf(conf: dict[str, str]) -> dict[str, str]:
    """Only ``spark.*`` keys with string values (typos like ``sprak.jars`` fail early)."""
    bad = [k for k, v in conf.items()
           if not isinstance(k, str) or not k.startswith("spark.") or not isinstance(v, str)]
    if bad:
        raise UserError(f"spark_conf keys must start with 'spark.' and map to strings: {bad}")
    return dict(conf)


def check_parameters(start: date, end: date, *, table_pattern: str,
                     spark_conf: dict[str, str]) -> list[MonthSlice]:
    """The rules of the extraction that its parameter types cannot state: ``end`` not
    before ``start``, ``table_pattern``'s placeholders and the identifier it gives,
    ``spark_conf`` keys. Opens nothing; returns the planned months; raises
    :class:`ShopfloorError` with one line.

    The limits a type can hold (counts, the prefix, the master, the patterns' lengths)
    are the flow's parameter types below, checked before a run exists.
    """
    months = plan_months(start, end, table_pattern)
    check_spark_conf(spark_conf)
    return months


# -- parameter types of spark-sensor-extraction ---------------------------------------
OutputPrefix = pattern_type(
    OUTPUT_PREFIX_PATTERN,
    "is not a folder inside the lake: use names of letters, digits, '_', '-', '.' "
    "separated by '/' (no '..', no leading or trailing '/')")
"""A relative folder inside the lake, e.g. ``sensor_data`` or ``lake/sensors.v2``."""

SparkMaster = pattern_type(
    MASTER_PATTERN,
    "is not a Spark master: use local[*], local[N], spark://host:7077, yarn or "
    "k8s://https://host:port")
"""``local``, ``local[N]``, ``local[*]``, ``spark://host:port[,host:port]``, ``yarn``,
``k8s://...``."""

TablePattern = pattern_type(
    TABLE_PATTERN_CHARS,
    "is not a table pattern: use letters, digits, underscores and the placeholders "
    "{yyyy} and {mm} only")
"""A monthly table name with ``{yyyy}`` and ``{mm}``; placeholders are checked by
:func:`check_parameters`."""

TagPatterns = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH)]],
    Field(min_length=1)]
"""At least one SQL LIKE pattern, each of 1-255 characters."""

# Strict: a bool or a numeric string is not a count or a code (as before the types).
QualityCodes = Annotated[list[Annotated[int, Field(strict=True)]], Field(min_length=1)]
"""At least one ``dataintegrity`` code (192 is Ignition's "good")."""

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
"""A whole number of at least 1."""

RecheckDays = Annotated[int, Field(strict=True, ge=0, le=92)]
"""Days before ``start`` whose row counts are compared with the lake (0: no re-check)."""

Layout = Literal["date", "tag"]
"""The output layout: ``date`` (``date=<day>/`` files, ``tag`` a column) or ``tag``
(``tag=<key>/date=<day>/`` folders); see :mod:`shopfloor.historian.lake`."""

TargetFileMb = Annotated[int, Field(strict=True, ge=1, le=4096)]
"""Size of an output file in MiB (1..4096): a day's rows are cut into files of about this."""
