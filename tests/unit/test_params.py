import re
from datetime import date, datetime

import pytest
from pydantic import TypeAdapter

from shopfloor.params import (
    ISO_DATE_PATTERN,
    ISO_DATETIME_PATTERN,
    IsoDate,
    IsoDateTime,
    OptionalStoragePrefix,
    StoragePrefix,
)


@pytest.mark.parametrize("text", ["2026-11-21", "2026-11-21T05:00", "2026-11-21T05:00:00Z",
                                  "2026-11-21 05:00:00.123456+08:00", "2026-11-21T05:00:00-0300"])
def test_iso_timestamps_match_and_parse(text):
    assert re.match(ISO_DATETIME_PATTERN, text)
    assert isinstance(TypeAdapter(IsoDateTime).validate_python(text), datetime)


@pytest.mark.parametrize("text", ["not-a-date", "2026-11", "21/11/2026", "2026-11-21T5", ""])
def test_malformed_timestamps_do_not_match(text):
    assert not re.match(ISO_DATETIME_PATTERN, text)


def test_dates_are_days_only():
    assert re.match(ISO_DATE_PATTERN, "2026-02-28")
    assert not re.match(ISO_DATE_PATTERN, "2026-02-28T00:00")
    assert TypeAdapter(IsoDate).validate_python("2026-02-28") == date(2026, 2, 28)


def test_the_pattern_reaches_the_json_schema():
    schema = TypeAdapter(IsoDateTime | None).json_schema()
    assert schema["anyOf"][0]["pattern"] == ISO_DATETIME_PATTERN


@pytest.mark.parametrize("text, ok", [
    ("datalog_v2", True), ("lake/sensors/", True), ("a/.hidden/b", True), ("a/.../b", True),
    ("hiveperiod=2025-11-20", True), ("", False), ("/a", False), ("..", False),
    ("a/../b", False), ("a/./b", False), ("a//b", False), ("a b", False),
])
def test_storage_prefixes_compile_in_pydantic_and_refuse_climbing_out(text, ok):
    # pydantic-core's regex engine has no look-around: the type must build at all.
    valid = True
    try:
        TypeAdapter(StoragePrefix).validate_python(text)
    except ValueError:
        valid = False
    assert valid is ok
    assert TypeAdapter(OptionalStoragePrefix).validate_python("") == ""
