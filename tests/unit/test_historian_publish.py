"""Publishing an extraction window: staging, manifest, replace, and the roll-forward of a
replace a crash interrupted (on a local folder)."""

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.historian import publish
from shopfloor.historian.lake import count_rows, is_data_file
from shopfloor.historian.publish import PublishLayout, clean_leftovers, new_token
from shopfloor.storage import StorageLocation

TAGS, DATES = ["a", "b"], ["2026-01-31", "2026-02-01"]


class Crash(Exception):
    """Stands for a kill -9 at the hook's step."""


def _write(storage: StorageLocation, key: str, values: list[int]) -> None:
    storage.make_parent(key)
    pq.write_table(pa.table({"v": values}), storage.path(key))


def _snapshot(storage: StorageLocation, prefix: str) -> dict[str, str]:
    return {o.key: hashlib.sha256(storage.read_bytes(o.key)).hexdigest()
            for o in storage.list_objects(prefix)}


@pytest.fixture
def lake(tmp_path) -> StorageLocation:
    """Old output: two partitions of the window and one outside it (another date)."""
    storage = StorageLocation("local", str(tmp_path))
    _write(storage, "out/tag=a/date=2026-01-31/part-0.parquet", [1, 2])
    _write(storage, "out/tag=b/date=2026-02-01/part-0.parquet", [3])
    storage.write_bytes("out/tag=b/date=2026-02-01/.part-0.parquet.crc", b"crc")
    _write(storage, "out/tag=a/date=2026-01-30/part-0.parquet", [9])
    return storage


def _stage(storage: StorageLocation, token: str) -> PublishLayout:
    """A new month in staging: both window partitions plus a new one (tag a, 02-01)."""
    layout = PublishLayout(storage, "out", token)
    for part, values in [("tag=a/date=2026-01-31", [10, 20]), ("tag=b/date=2026-02-01", [30]),
                         ("tag=a/date=2026-02-01", [40, 50, 60])]:
        _write(storage, f"{layout.staging_key}/{part}/part-00000-0000.parquet", values)
    storage.write_bytes(f"{layout.staging_key}/_SUCCESS", b"")
    return layout


def _values(storage: StorageLocation, prefix: str) -> list[int]:
    keys = [o.key for o in storage.list_objects(prefix) if is_data_file(o.key)]
    return sorted(v for k in keys for v in pq.read_table(storage.path(k))["v"].to_pylist())


def _leftovers(storage: StorageLocation) -> list[str]:
    return [o.key for o in storage.list_objects(publish.AREA)]


def test_staging_and_manifest_live_outside_the_output_and_final_names_carry_the_token(lake):
    layout = PublishLayout(lake, "out", "run-1")
    assert layout.staging_key == "_extraction/out/staging/run-1"
    assert layout.manifest_key == "_extraction/out/manifests/run-1.json"
    assert layout.final_key("_extraction/out/staging/run-1/tag=a/date=2026-01-31/"
                            "part-00000-x.c000.snappy.parquet") == (
        "out/tag=a/date=2026-01-31/part-run-1-00000-x.c000.snappy.parquet")


def test_tokens_and_prefixes_are_checked():
    token = new_token("0f6c1a2e-8d1b-4c52-9a39-1e0c6a3b7d11")
    assert token.startswith("0f6c1a2e-8d1b-4c52-9a39-1e0c6a3b7d11-") and len(token) == 45
    assert new_token(None) != new_token(None)
    for bad in ["", "../x", "a/b", "a b", "x" * 65]:
        with pytest.raises(ShopfloorError, match="invalid extraction token"):
            PublishLayout(StorageLocation("local", "/nowhere"), "out", bad)
    for bad in ["", "/out", "../out", "out/", "_extraction", "_extraction/out"]:
        with pytest.raises(ShopfloorError, match="invalid output prefix"):
            PublishLayout(StorageLocation("local", "/nowhere"), bad, "t")


def test_a_replace_swaps_exactly_the_window_and_leaves_nothing_behind(lake):
    outside = _snapshot(lake, "out/tag=a/date=2026-01-30")
    layout = _stage(lake, "t1")
    staged = publish.staged_files(layout, TAGS, DATES)
    assert len(staged) == 3 and count_rows(lake, staged) == 6
    manifest = publish.plan_replace(layout, staged, TAGS, DATES)
    assert publish.replace(layout, manifest) == 2  # old data files (the .crc goes too)
    assert _values(lake, "out") == [9, 10, 20, 30, 40, 50, 60]
    assert _snapshot(lake, "out/tag=a/date=2026-01-30") == outside
    assert all("part-t1-" in k for k in _snapshot(lake, "out") if "2026-01-30" not in k)
    assert _leftovers(lake) == []


def test_a_staged_file_outside_the_window_is_refused(lake):
    layout = _stage(lake, "t1")
    with pytest.raises(ShopfloorError, match="outside the window"):
        publish.staged_files(layout, ["a"], DATES)


def test_a_crash_after_the_first_move_is_rolled_forward_by_the_next_run(lake):
    layout = _stage(lake, "t1")
    manifest = publish.plan_replace(layout, publish.staged_files(layout, TAGS, DATES),
                                    TAGS, DATES)

    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        publish.replace(layout, manifest, after_first_move=crash)
    # half done: one file moved, the old files and the manifest still there
    assert lake.exists(layout.manifest_key)
    moved = [dst for _, dst in manifest["moves"] if lake.exists(dst)]
    assert len(moved) == 1
    found = clean_leftovers(lake, "out")
    assert found.rolled_forward == 1
    assert _values(lake, "out") == [9, 10, 20, 30, 40, 50, 60]
    assert _leftovers(lake) == []
    # idempotent: a second clean-up finds nothing and changes nothing
    before = _snapshot(lake, "out")
    assert clean_leftovers(lake, "out") == publish.Cleanup(0, 0)
    assert _snapshot(lake, "out") == before


def test_a_crash_after_every_move_and_the_staging_removal_is_finished(lake):
    layout = _stage(lake, "t1")
    manifest = publish.plan_replace(layout, publish.staged_files(layout, TAGS, DATES),
                                    TAGS, DATES)
    lake.write_bytes(layout.manifest_key, json.dumps(manifest).encode())
    for src, dst in manifest["moves"]:
        lake.move(src, dst)
    lake.remove_tree(layout.staging_key)
    assert clean_leftovers(lake, "out").rolled_forward == 1
    assert _values(lake, "out") == [9, 10, 20, 30, 40, 50, 60]
    assert _leftovers(lake) == []


def test_a_manifest_whose_files_are_lost_is_refused_and_the_old_output_kept(lake):
    layout = _stage(lake, "t1")
    manifest = publish.plan_replace(layout, publish.staged_files(layout, TAGS, DATES),
                                    TAGS, DATES)
    lake.write_bytes(layout.manifest_key, json.dumps(manifest).encode())
    lake.remove_tree(layout.staging_key)  # neither source nor destination exists
    before = _snapshot(lake, "out")
    with pytest.raises(ShopfloorError, match="cannot be finished"):
        clean_leftovers(lake, "out")
    assert _snapshot(lake, "out") == before


def test_a_manifest_naming_keys_elsewhere_is_refused(lake):
    lake.write_bytes("_extraction/out/manifests/evil.json", json.dumps(
        {"token": "evil", "staging": "_extraction/out/staging/evil", "moves": [],
         "delete": ["other/tag=a/date=2026-01-31/part-0.parquet"]}).encode())
    with pytest.raises(ShopfloorError, match="outside 'out'"):
        clean_leftovers(lake, "out")


def test_staging_without_a_manifest_is_removed_and_the_output_untouched(lake):
    before = _snapshot(lake, "out")
    _stage(lake, "dead")
    found = clean_leftovers(lake, "out")
    assert found == publish.Cleanup(0, 4)
    assert _snapshot(lake, "out") == before and _leftovers(lake) == []


def test_discard_drops_staging_but_not_a_replace_under_way(lake):
    before = _snapshot(lake, "out")
    layout = _stage(lake, "t1")
    assert publish.discard(layout) and _leftovers(lake) == []
    assert _snapshot(lake, "out") == before
    layout = _stage(lake, "t2")
    lake.write_bytes(layout.manifest_key, b"{}")
    assert not publish.discard(layout) and lake.exists(f"{layout.staging_key}/_SUCCESS")


def test_a_date_layout_replace_swaps_whole_days_and_refuses_files_outside_them(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    _write(lake, "out/date=2026-01-31/part-old.parquet", [1, 2])
    _write(lake, "out/date=2026-02-02/part-old.parquet", [9])  # another day: kept
    layout = PublishLayout(lake, "out", "t1", partitioning="date")
    staged = f"{layout.staging_key}/date=2026-01-31/part-00000-0000.parquet"
    carried = f"{layout.staging_key}/date=2026-01-31/part-carry-00000.parquet"
    _write(lake, staged, [10])
    _write(lake, carried, [2])
    keys = publish.staged_files(layout, ["a"], ["2026-01-31", "2026-02-01"])
    assert sorted(keys) == sorted([staged, carried])
    assert layout.final_key(carried) == "out/date=2026-01-31/part-t1-carry-00000.parquet"
    manifest = publish.plan_replace(layout, keys, ["a"], ["2026-01-31", "2026-02-01"])
    assert manifest["delete"] == ["out/date=2026-01-31/part-old.parquet"]
    assert publish.replace(layout, manifest) == 1
    assert _values(lake, "out") == [2, 9, 10]
    _write(lake, f"{layout.staging_key}/date=2026-03-01/part-0.parquet", [1])
    with pytest.raises(ShopfloorError, match="outside the window"):
        publish.staged_files(layout, ["a"], ["2026-01-31"])
    _write(lake, f"{layout.staging_key}/tag=a/date=2026-01-31/part-0.parquet", [1])
    with pytest.raises(ShopfloorError, match="outside the window"):
        publish.staged_files(layout, ["a"], ["2026-03-01"])


def test_an_unknown_layout_is_refused():
    with pytest.raises(ShopfloorError, match="invalid layout"):
        PublishLayout(StorageLocation("local", "/nowhere"), "out", "t", partitioning="hour")
