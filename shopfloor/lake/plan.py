"""Which partitions to merge and how: pure functions over a listing (no I/O here).

A *partition* is a leaf folder of Parquet files under a dataset prefix
(``datalog_v2/hiveperiod=2026-01-05/dstrct_code=BRCB``, ``sensor_data/date=2026-01-05`` or
``sensor_data/tag=x/date=2026-01-05``, ``tag_samples/tag_id=7/month=2026-01``). It is
*closed* when the day its path names (``hiveperiod=`` or ``date=``; for ``month=``, the
month's last day) is older than ``today - grace_days``: writers no longer add to it in
the normal course, so merging it does not race them.

Files at least half the target size are *good* and left alone; the small ones are packed,
in key order, into groups of at most ``target_bytes`` (measured on the input bytes; the
merged file comes out at or below that, small files carry more overhead). A group of one
file is not rewritten, and a partition with fewer than ``min_files`` small files is left
alone, so a partition holding one good file (or one late straggler) costs nothing.
"""

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from shopfloor.storage import ObjectInfo

_DAY = re.compile(r"(?:^|/)(?:hiveperiod|date)=(\d{4}-\d{2}-\d{2})(?:/|$)")
_MONTH = re.compile(r"(?:^|/)month=(\d{4}-\d{2})(?:/|$)")
MERGED_PREFIX = "merged-"
STATE_NAME = "_lake_state.json"


def is_data_file(key: str) -> bool:
    """A Parquet data file (hidden ``_``/``.`` names, markers and checksums are not)."""
    name = key.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def partition_day(partition: str) -> date | None:
    """The day a partition's path names (its last ``hiveperiod=``/``date=`` folder), or
    the last day of the month a ``month=YYYY-MM`` folder names (the tag lake export's)."""
    found = _DAY.findall(partition)
    try:
        if found:
            return date.fromisoformat(found[-1])
        months = _MONTH.findall(partition)
        if not months:
            return None
        first = date.fromisoformat(f"{months[-1]}-01")
    except ValueError:
        return None
    return (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def is_closed(partition: str, today: date, grace_days: int) -> bool:
    """Whether the partition's day is older than ``today - grace_days``."""
    day = partition_day(partition)
    return day is not None and day < today - timedelta(days=grace_days)


def group_partitions(objects: Iterable[ObjectInfo]) -> dict[str, list[ObjectInfo]]:
    """Data files by partition (their folder), skipping ``_``-prefixed folders (staging
    areas of writers and of this merge)."""
    out: dict[str, list[ObjectInfo]] = defaultdict(list)
    for obj in objects:
        folder, _, _ = obj.key.rpartition("/")
        if not folder or not is_data_file(obj.key):
            continue
        if any(seg.startswith("_") for seg in folder.split("/")):
            continue
        out[folder].append(obj)
    return {k: sorted(v, key=lambda o: o.key) for k, v in sorted(out.items())}


def pack(files: Sequence[ObjectInfo], target_bytes: int) -> list[list[ObjectInfo]]:
    """Small files (under half of ``target_bytes``) in key order, cut into groups whose
    bytes stay within ``target_bytes``; groups of one file are dropped (nothing to merge)."""
    small = [f for f in sorted(files, key=lambda o: o.key) if f.size < target_bytes / 2]
    groups: list[list[ObjectInfo]] = []
    current: list[ObjectInfo] = []
    size = 0
    for f in small:
        if current and size + f.size > target_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        groups.append(current)
    return [g for g in groups if len(g) > 1]


@dataclass(frozen=True)
class PartitionPlan:
    """One partition to merge: its key and the groups of input files, one output each."""

    partition: str
    groups: tuple[tuple[ObjectInfo, ...], ...]

    @property
    def inputs(self) -> list[str]:
        return [f.key for g in self.groups for f in g]

    @property
    def bytes_in(self) -> int:
        return sum(f.size for g in self.groups for f in g)


def plan_partition(partition: str, files: Sequence[ObjectInfo], target_bytes: int,
                   min_files: int) -> PartitionPlan | None:
    """The merge of one partition's (visible, not busy) files, or ``None`` if not worth it."""
    small = [f for f in files if f.size < target_bytes / 2]
    if len(small) < max(min_files, 2):
        return None
    groups = pack(files, target_bytes)
    if not groups:
        return None
    return PartitionPlan(partition, tuple(tuple(g) for g in groups))


