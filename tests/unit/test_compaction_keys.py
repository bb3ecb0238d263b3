"""Key layout, registry rows, parameter checks and fault injection of the compaction flows."""

from datetime import UTC, datetime

import pytest

from flows.s3_compaction import register_s3_keys, s3_compaction
from shopfloor.compaction import faults
from shopfloor.compaction.duck import check_ram_limit
from shopfloor.compaction.faults import PAUSE_AT, PAUSE_FILE, pause_hook_from_env
from shopfloor.compaction.keys import (
    check_district,
    check_prefix,
    district_from_key,
    key_hash,
    registry_rows,
)
from shopfloor.compaction.layout import ClaimLayout, check_target_prefix, sql_string
from shopfloor.compaction.records import heartbeat_reason
from shopfloor.compaction.status import quarantine_source
from shopfloor.errors import ShopfloorError
from shopfloor.params import check_typed
from shopfloor.storage import ObjectInfo, StorageLocation

NOW = datetime(2025, 11, 20, tzinfo=UTC)


@pytest.mark.parametrize("key, expected", [
    ("BRCB/2025/11/20/a.json", "BRCB"),
    ("logs/distrik=SATU/2025/a.json", "SATU"),
    ("dstrct_code=KJB1/a.json", "KJB1"),
    ("line1-plc/2025112000/a.json", None),
    ("a.json", None),
])
def test_distrik_from_key_layout(key, expected):
    assert district_from_key(key) == expected


def test_key_hash_is_sha256_hex():
    assert key_hash("a") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


def test_registry_rows_prefer_the_parameter_and_skip_non_json():
    objs = [ObjectInfo("BRCB/a.json", 5), ObjectInfo("x/b.jsonl.gz", 7), ObjectInfo("c.txt", 1)]
    rows, unknown = registry_rows(objs, "SATU", NOW)
    assert [(r["key"], r["distrik"], r["size"], r["compression_status"]) for r in rows] == [
        ("BRCB/a.json", "SATU", 5, "PENDING"), ("x/b.jsonl.gz", "SATU", 7, "PENDING")]
    assert unknown == []


def test_registry_rows_report_keys_without_a_distrik():
    rows, unknown = registry_rows([ObjectInfo("plc/a.json", 1)], None, NOW)
    assert rows == [] and unknown == ["plc/a.json"]


@pytest.mark.parametrize("bad", ["", "BR CB", "x" * 33, "a'b"])
def test_bad_distrik_is_rejected(bad):
    with pytest.raises(ShopfloorError, match="invalid district"):
        check_district(bad)


def test_prefix_may_not_climb_out():
    assert check_prefix("plc1/2025") == "plc1/2025"
    assert check_prefix("") == ""
    for bad in ("a/../../etc", "/plc1", "..", "a b"):
        with pytest.raises(ShopfloorError, match="invalid prefix"):
            check_prefix(bad)


@pytest.mark.parametrize("good", ["1GB", "512MB", "10GiB", " 2 gb "])
def test_ram_limit_accepts_sizes(good):
    assert check_ram_limit(good) == good.strip()


@pytest.mark.parametrize("bad", ["lots", "1GB; DROP", "", "-1GB"])
def test_ram_limit_rejects_anything_else(bad):
    with pytest.raises(ShopfloorError, match="invalid ram_limit"):
        check_ram_limit(bad)


@pytest.mark.parametrize("bad", ["", "/", "/x", "../x", "a/../b", "a b", "a'b", "x" * 129])
def test_target_prefix_must_be_plain_folders(bad):
    with pytest.raises(ShopfloorError, match="invalid target_prefix"):
        check_target_prefix(bad)


def test_target_prefix_loses_its_trailing_slash_in_the_layout():
    assert check_target_prefix("lake/datalog_v2/") == "lake/datalog_v2"
    layout = ClaimLayout(StorageLocation("local", "/l"), "datalog_v2/", "run-1")
    assert layout.staging_key == "_compaction/datalog_v2/staging/run-1"


def test_quotes_in_a_path_cannot_break_out_of_the_literal():
    assert sql_string("it's") == "'it''s'"


def test_claim_layout_names_everything_after_the_token():
    layout = ClaimLayout(StorageLocation("s3", "bkt", "lake"), "datalog_v2", "run-1")
    assert layout.staging_root == "s3://bkt/lake/_compaction/datalog_v2/staging/run-1"
    assert layout.manifest_key == "_compaction/datalog_v2/manifests/run-1.json"
    staged = layout.staging_root + "/hiveperiod=2025-11-20/dstrct_code=BRCB/part-run-1-0.parquet"
    assert layout.final_key(staged) == (
        "datalog_v2/hiveperiod=2025-11-20/dstrct_code=BRCB/part-run-1-0.parquet")
    assert layout.staged_key(staged) == (
        "_compaction/datalog_v2/staging/run-1/hiveperiod=2025-11-20/dstrct_code=BRCB/"
        "part-run-1-0.parquet")
    with pytest.raises(ShopfloorError, match="outside"):
        layout.final_key("s3://bkt/lake/elsewhere/part-run-1-0.parquet")
    with pytest.raises(ShopfloorError):
        layout.for_token("../other")


@pytest.mark.parametrize("value, check", [
    (None, "missing"), ("abc", "not_numeric"), ("nan", "not_numeric"),
    (-5, "out_of_range_1970_2100"), ("1e30", "out_of_range_1970_2100"),
])
def test_heartbeat_reasons(value, check):
    assert heartbeat_reason(value).check == check


def test_quarantine_source_falls_back_to_a_hash_for_long_keys():
    assert quarantine_source("a/b.json") == "s3_compaction:a/b.json"
    long = quarantine_source("k" * 400)
    assert long.startswith("s3_compaction:sha256:") and len(long) <= 255


def test_fault_injection_is_off_unless_set():
    assert pause_hook_from_env({}) is None
    assert pause_hook_from_env({PAUSE_AT: ""}) is None
    with pytest.raises(ShopfloorError, match="after_stage, mid_publish"):
        pause_hook_from_env({PAUSE_AT: "mid-publish"})


def test_fault_injection_pauses_only_at_its_step(tmp_path, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    marker = tmp_path / "paused"
    pause = pause_hook_from_env({PAUSE_AT: "mid_publish", PAUSE_FILE: str(marker)})
    pause("after_stage")
    assert slept == [] and not marker.exists()
    pause("mid_publish")
    assert slept == [faults.PAUSE_SECONDS] and marker.read_text() == "mid_publish"


def test_the_typed_limits_give_one_line_per_bad_value():
    good = {"distrik": "BRCB", "key_limit_per_run": 1000, "ram_limit": "10GB",
            "target_prefix": "datalog_v2", "tz_offset_hours": 8, "claim_ttl_minutes": 60}
    check_typed(s3_compaction, **good)
    for change, message in [
        ({"distrik": "BR CB"}, "distrik: 'BR CB' is not a district code"),
        ({"ram_limit": "lots"}, "ram_limit: 'lots' is not a memory size"),
        ({"target_prefix": "../x"}, "target_prefix: '../x' is not a folder"),
        ({"key_limit_per_run": 0}, "key_limit_per_run: .*greater than or equal to 1, got 0"),
        ({"key_limit_per_run": 100_001}, "key_limit_per_run: .*100000, got 100001"),
        ({"tz_offset_hours": -15}, "tz_offset_hours: .*-14, got -15"),
        ({"claim_ttl_minutes": -1}, "claim_ttl_minutes: .*, got -1"),
    ]:
        with pytest.raises(ShopfloorError, match=message) as info:
            check_typed(s3_compaction, **{**good, **change})
        assert "\n" not in str(info.value)


def test_register_refuses_a_bad_district_and_prefix_in_one_line():
    check_typed(register_s3_keys, prefix="plc1/", distrik=None)
    with pytest.raises(ShopfloorError, match="prefix: '/abs' is not a folder.*; "
                                             "distrik: 'a b' is not a district code"):
        check_typed(register_s3_keys, prefix="/abs", distrik="a b")
