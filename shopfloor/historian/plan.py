"""Check the extraction parameters and split a date window into monthly table slices.

The window is ``[start 00:00 UTC, end + 1 day 00:00 UTC)``: both dates are included,
so ``start == end`` extracts one day.
"""

import re
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shopfloor.errors import ShopfloorError
from shopfloor.identifiers import check_identifier

PLACEHOLDERS = ("yyyy", "mm")
_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9_{}]+$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[\w.-]+:\d+(,[\w.-]+:\d+)*"
                     r"|yarn|k8s://\S+)$")


@dataclass(frozen=True)
class MonthSlice:
    """The part of the window that falls in one month, and the table that holds it."""

    table: str
    month: str  # "YYYY-MM"
    start_ms: int  # inclusive, epoch milliseconds UTC
    end_ms: int  # exclusive

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
        """The slice cut at UTC midnights into at most ``parts`` contiguous ``[lo, hi)`` ranges.

        Day-aligned ranges keep every ``(tag, date)`` in one Spark partition, so a date
        partition gets one file instead of one per read range that crosses it.
        """
        days = len(self.dates)
        parts = max(1, min(parts, days))
        bounds = [self.start_ms]
        for i in range(1, parts):
            day = _from_ms(self.start_ms).date() + timedelta(days=(i * days) // parts)
            bounds.append(max(self.start_ms, epoch_ms(day)))
        bounds.append(self.end_ms)
        return list(zip(bounds[:-1], bounds[1:], strict=True))


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def epoch_ms(day: date) -> int:
    """Milliseconds since the epoch of ``day`` at 00:00 UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def check_table_pattern(pattern: str) -> str:
    """Accept only identifier characters and the ``{yyyy}`` / ``{mm}`` placeholders."""
    if not isinstance(pattern, str) or not _PATTERN_CHARS.fullmatch(pattern):
        raise ShopfloorError(
            f"invalid table_pattern {pattern!r}: use letters, digits, underscores and the "
            "placeholders {yyyy} and {mm} only"
        )
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(pattern)
                  if f is not None or spec or conv]
    except ValueError as exc:
        raise ShopfloorError(f"invalid table_pattern {pattern!r}: {exc}") from None
    unknown = sorted(set(fields) - set(PLACEHOLDERS))
    if unknown:
        raise ShopfloorError(
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
        raise ShopfloorError("give both start and end, or neither (yesterday)")
    return start, end


def check_window(start: date, end: date) -> None:
    """Reject an end before the start (the end date is included)."""
    if end < start:
        raise ShopfloorError(f"end {end} is before start {start}")


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


def check_output_prefix(prefix: str) -> str:
    """A relative folder inside the lake: safe segments, no ``..``, no leading ``/``."""
    parts = prefix.split("/") if isinstance(prefix, str) else [""]
    if not prefix or any(not _PREFIX_SEGMENT.fullmatch(p) or set(p) == {"."} for p in parts):
        raise ShopfloorError(
            f"invalid output_prefix {prefix!r}: use folder names of letters, digits, "
            "'_', '-', '.' separated by '/' (no '..', no leading or trailing '/')"
        )
    return prefix


def check_spark_master(master: str) -> str:
    """``local``, ``local[N]``, ``local[*]``, ``spark://host:port``, ``yarn`` or ``k8s://...``."""
    if not isinstance(master, str) or not _MASTER.fullmatch(master):
        raise ShopfloorError(
            f"invalid spark_master {master!r}: use local[*], local[N], spark://host:7077, "
            "yarn or k8s://https://host:port"
        )
    return master


def check_positive(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ShopfloorError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_good_quality(codes: list[int]) -> list[int]:
    """At least one dataintegrity code (192 is Ignition's "good")."""
    if not codes or any(not isinstance(c, int) or isinstance(c, bool) for c in codes):
        raise ShopfloorError(f"good_quality must be a non-empty list of integers, got {codes!r}")
    return sorted(set(codes))


def check_spark_conf(conf: dict[str, str]) -> dict[str, str]:
    """Only ``spark.*`` keys with string values (typos like ``sprak.jars`` fail early)."""
    bad = [k for k, v in conf.items()
           if not isinstance(k, str) or not k.startswith("spark.") or not isinstance(v, str)]
    if bad:
        raise ShopfloorError(f"spark_conf keys must start with 'spark.' and map to strings: {bad}")
    return dict(conf)


@dataclass(frozen=True)
class ExtractionPlan:
    """The checked parameters of one extraction run."""

    months: list[MonthSlice]
    tag_patterns: list[str]
    good_quality: list[int]
    output_prefix: str
    spark_master: str
    spark_conf: dict[str, str]
    max_records_per_file: int
    num_partitions: int


def check_parameters(start: date, end: date, *, tag_patterns: list[str], output_prefix: str,
                     table_pattern: str, good_quality: list[int], spark_master: str,
                     spark_conf: dict[str, str], max_records_per_file: int,
                     num_partitions: int) -> ExtractionPlan:
    """Check every parameter (nothing is opened) and plan the months; raises ShopfloorError."""
    from shopfloor.historian.tags import check_tag_patterns

    return ExtractionPlan(
        months=plan_months(start, end, table_pattern),
        tag_patterns=check_tag_patterns(tag_patterns),
        good_quality=check_good_quality(good_quality),
        output_prefix=check_output_prefix(output_prefix),
        spark_master=check_spark_master(spark_master),
        spark_conf=check_spark_conf(spark_conf),
        max_records_per_file=check_positive(max_records_per_file, "max_records_per_file"),
        num_partitions=check_positive(num_partitions, "num_partitions"),
    )
