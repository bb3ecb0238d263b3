"""Plain JSON messages as tag points: a topic filter picks the mapping, dotted paths pick
the values, each judged on its own (a missing path or a value that is not a number makes
that point bad with its reason; the message's other values stay good)."""

import json
import math
from datetime import UTC, datetime
from typing import Any

from shopfloor.mqtt.config import JsonTag, JsonTopic, device_name, topic_matches
from shopfloor.mqtt.points import TagPoint, judged
from shopfloor.tags.quality import (
    BAD,
    MISSING,
    NO_TIMESTAMP,
    NOT_A_BOOLEAN,
    NOT_A_NUMBER,
    NOT_JSON,
    NOT_TEXT,
    UNCERTAIN,
)
from shopfloor.tags.registry import TagInfo

_ABSENT = object()
# Epoch numbers above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1e11


def route(routes: list[JsonTopic], topic: str) -> JsonTopic | None:
    """The first mapping whose filter matches ``topic``."""
    return next((r for r in routes if topic_matches(r.topic, topic)), None)


def tag_info(r: JsonTopic, tag: JsonTag, topic: str) -> TagInfo:
    """The registry's view of ``tag`` on ``topic``: its source is ``<topic>:<path>``."""
    return TagInfo(name=tag.name, device=device_name(r.device, topic), location=r.location,
                   unit=tag.unit, data_type=tag.data_type, description=tag.description,
                   source_name=f"{topic}:{tag.path}"[:255])


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path (keys, or indexes into lists); ``_ABSENT`` if none."""
    node = doc
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return _ABSENT
    return node


def epoch_ms(value: Any) -> int | None:
    """Milliseconds since the epoch from a number (seconds or milliseconds) or an ISO
    8601 text (a time without offset is UTC); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        return round(value if abs(value) >= _MS_THRESHOLD else value * 1000)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1000)
    return None


def _point(info: TagInfo, tag: JsonTag, ms: int, value: Any) -> TagPoint:
    """One value judged against its tag's type and range."""
    if value is _ABSENT or value is None:
        return TagPoint(info, ms, quality=BAD, reason=MISSING)
    if tag.data_type == "string":
        if isinstance(value, dict | list):
            return TagPoint(info, ms, quality=BAD, reason=NOT_TEXT)
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        return TagPoint(info, ms, text=text)
    if tag.data_type == "bool":
        if isinstance(value, bool) or value in (0, 1):
            return TagPoint(info, ms, float(bool(value)))
        return TagPoint(info, ms, quality=BAD, reason=NOT_A_BOOLEAN)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return TagPoint(info, ms, quality=BAD, reason=NOT_A_NUMBER)
    if tag.data_type == "int64" and isinstance(value, float) and not value.is_integer():
        return TagPoint(info, ms, float(value), quality=BAD, reason=NOT_A_NUMBER)
    return judged(info, ms, float(value), tag.min_value, tag.max_value)


# What reading one tag of a mapping on one topic takes, worked out once: (registry entry,
# tag, path keys, the two keys of a two-level path or None, "a float64 tag: a number in
# [lo, hi] needs no other check", lo, hi). Plain tuples: unpacked per value in
# :func:`_scan`, the hottest loop of the ingestion.
_Plan = tuple[TagInfo, JsonTag, tuple[str, ...], str, str | None, bool, float, float]
Plans = dict[tuple[int, str], tuple[list[TagInfo], list[_Plan]]]
"""A cache of plans by (``id()`` of the mapping, topic): its owner keeps the mappings
alive (the :class:`~shopfloor.mqtt.ingest.Decoder` holds the configuration)."""
_MAX_PLANS = 100_000  # topics x mappings remembered; forgotten all at once past it


def mapping_tags(r: JsonTopic, topic: str, cache: Plans) -> list[TagInfo]:
    """The registry entries of ``r``'s tags on ``topic``: the same list object for every
    message of the topic while ``cache`` keeps it."""
    return _plans(r, topic, cache)[0]


def _plans(r: JsonTopic, topic: str, cache: Plans) -> tuple[list[TagInfo], list[_Plan]]:
    """The tags of ``r`` on ``topic`` (their registry entries made once per topic)."""
    key = (id(r), topic)
    plans = cache.get(key)
    if plans is None:
        if len(cache) >= _MAX_PLANS:
            cache.clear()
        steps = []
        for t in r.tags:
            keys = tuple(t.path.split("."))
            steps.append((tag_info(r, t, topic), t, keys, keys[0],
                          keys[1] if len(keys) == 2 else None, t.data_type == "float64",
                          -math.inf if t.min_value is None else t.min_value,
                          math.inf if t.max_value is None else t.max_value))
        plans = cache[key] = ([s[0] for s in steps], steps)
    return plans


def _value(doc: Any, keys: tuple[str, ...]) -> Any:
    node = doc
    for key in keys:
        if type(node) is dict:
            node = node.get(key, _ABSENT)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return _ABSENT
    return node


def _scan(doc: dict[str, Any], plans: list[_Plan], ms: int | None) -> list[Any] | None:
    """Every tag of ``plans`` read from ``doc`` in one pass: the hottest loop of the
    ingestion, shared by both callers.

    ``ms`` None (:func:`good_row`): the values as floats, each a number within its
    range (the fast check), or None at the first value that is not. ``ms`` given
    (:func:`message_points`): a point per tag at ``ms``, the values the fast check does
    not clear judged by :func:`_point` (NaN fails the comparison and goes there too).
    """
    out: list[Any] = []
    append, get = out.append, doc.get
    for info, tag, keys, k0, k1, fast, lo, hi in plans:
        if k1 is not None:  # the common shape, without a call: {"data": {"x": 1}}
            node = get(k0, _ABSENT)
            value = node.get(k1, _ABSENT) if type(node) is dict else _value(doc, keys)
        else:
            value = _value(doc, keys)
        kind = type(value)
        if fast and (kind is float or kind is int) and lo <= value <= hi:
            if kind is int:
                value = float(value)
            append(value if ms is None else TagPoint(info, ms, value))
        elif ms is None:
            return None
        else:
            append(_point(info, tag, ms, value))
    return out


def good_row(r: JsonTopic, topic: str, payload: bytes, cache: Plans
             ) -> tuple[list[TagInfo], int, list[float]] | None:
    """(tags, time, values) of a message whose every tag is a ``float64`` number within
    its range and that carries its timestamp (the common case, without a point object
    per value); None otherwise: :func:`message_points` judges it value by value."""
    if r.timestamp is None:
        return None
    tags, plans = _plans(r, topic, cache)
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if type(doc) is not dict:
        return None
    ms = epoch_ms(lookup(doc, r.timestamp))
    if ms is None:
        return None
    values = _scan(doc, plans, None)
    return None if values is None else (tags, ms, values)


def message_points(r: JsonTopic, topic: str, payload: bytes, received_ms: int,
                   cache: Plans | None = None) -> list[TagPoint]:
    """Every tag of the mapping ``r`` in one message, judged point by point (``cache``:
    the caller's plans, kept between messages).

    A message that is not a JSON object gives every tag a bad point at the receive time;
    a configured timestamp that is missing or unreadable gives the receive time and
    makes the points uncertain. ``received_ms`` is the caller's: for a redelivery, the
    time the message was first stored at (:mod:`shopfloor.mqtt.deliveries`).
    """
    plans = _plans(r, topic, {} if cache is None else cache)[1]
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        return [TagPoint(p[0], received_ms, quality=BAD, reason=NOT_JSON) for p in plans]
    ms = received_ms
    stamped = True
    if r.timestamp is not None:
        found = epoch_ms(lookup(doc, r.timestamp))
        stamped = found is not None
        ms = found if found is not None else received_ms
    points: list[TagPoint] = _scan(doc, plans, ms)  # type: ignore[assignment] - never None
    if not stamped:
        points = [p if p.quality == BAD else TagPoint(p.tag, p.ms, p.value, p.text, UNCERTAIN,
                                                      NO_TIMESTAMP) for p in points]
    return points
