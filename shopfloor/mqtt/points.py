"""A message's values as tag points before they have ids: the tag as the registry will
know it, the time, the value and its quality."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shopfloor.modbus.tag_points import Points
from shopfloor.tags.quality import BAD, GOOD, NOT_FINITE, out_of_range
from shopfloor.tags.registry import TagInfo


@dataclass(frozen=True)
class TagPoint:
    """One value of one tag at one time (``ms``: epoch milliseconds)."""

    tag: TagInfo
    ms: int
    value: float | None = None
    text: str | None = None
    quality: int = GOOD
    reason: str | None = None


def judged(tag: TagInfo, ms: int, value: float, lo: float | None = None,
           hi: float | None = None) -> TagPoint:
    """A numeric point, bad when not finite or outside ``[lo, hi]``."""
    if not math.isfinite(value):
        return TagPoint(tag, ms, None, None, BAD, NOT_FINITE)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return TagPoint(tag, ms, value, None, BAD, out_of_range(
            -math.inf if lo is None else lo, math.inf if hi is None else hi))
    return TagPoint(tag, ms, value)


def to_points(points: Sequence[TagPoint], ids: Mapping[tuple[str, str], int]) -> Points:
    """Columns for ``tag_samples``, one point per (tag, time): the last given wins, as a
    repeated upsert would."""
    last: dict[tuple[int, int], TagPoint] = {}
    for p in points:
        last[(ids[(p.tag.device, p.tag.name)], p.ms)] = p
    keys = list(last)
    return Points(
        np.fromiter((k[0] for k in keys), np.int64, len(keys)),
        np.fromiter((k[1] for k in keys), np.int64, len(keys)),
        np.array([np.nan if p.value is None else p.value for p in last.values()], float),
        [p.text for p in last.values()],
        np.fromiter((p.quality for p in last.values()), np.int16, len(keys)),
        [p.reason for p in last.values()],
    )
