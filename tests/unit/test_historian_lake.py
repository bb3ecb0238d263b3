"""Lake layouts: which files belong to a window, deleting exactly them, counting rows (per
tag inside date files too), carrying other tags' rows over, the target file size."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.historian.lake import (
    BYTES_PER_ROW,
    DATE,
    TAG,
    Partition,
    carry_other_tags,
    count_rows,
    is_data_file,
    other_tag_rows,
    partition_of,
    rows_by_partition,
    rows_per_file,
    visible_files,
    window_files,
)
from shopfloor.lake.protocol import PartitionState, write_state
from shopfloor.storage import StorageLocation


def test_partition_of_reads_the_layout_tag_and_date_from_a_relative_key():
    assert partition_of("tag=a_b/date=2026-01-31/part-0.parquet") == Partition(
        TAG, "a_b", "2026-01-31")
    assert partition_of("date=2026-01-31/part-0.parquet") == Partition(DATE, None, "2026-01-31")
    assert partition_of("date=2026-01-31/_lake_state.json") == Partition(
        DATE, None, "2026-01-31")
    assert partition_of("tag=a/part-0.parquet") is None
    assert partition_of("tag=a/date=2026-1-3/part-0.parquet") is None
    assert partition_of("x/date=2026-01-31/part-0.parquet") is None  # not under the prefix


def test_only_visible_parquet_files_are_data():
    assert is_data_file("p/tag=a/date=2026-01-01/part-00000-x.c000.snappy.parquet")
    assert not is_data_file("p/tag=a/date=2026-01-01/.part-00000-x.snappy.parquet.crc")
    assert not is_data_file("p/_SUCCESS")


@pytest.mark.parametrize(("target_mb", "cap", "rows"), [
    (128, None, 128 * 2**20 // BYTES_PER_ROW),
    (128, 1_000, 1_000),
    (1, 10**9, 2**20 // BYTES_PER_ROW),
])
def test_rows_per_file_follow_the_target_size_and_the_cap(target_mb, cap, rows):
    assert rows_per_file(target_mb, cap) == rows


def _write(storage: StorageLocation, key: str, rows: int) -> None:
    path = storage.url(key)
    storage.filesystem().makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    pq.write_table(pa.table({"v": list(range(rows))}), path)


def _write_day(storage: StorageLocation, key: str, tags: list[str], row_group_size: int = 3
               ) -> None:
    """A date-layout file: rows sorted by tag, ``ts`` counting up per tag."""
    tag_col = sorted(tags)
    storage.make_parent(key)
    pq.write_table(pa.table({"tagid": pa.array(range(len(tag_col)), pa.int32()),
                             "ts": pa.array(range(len(tag_col)), pa.timestamp("us", "UTC")),
                             "value": [float(i) for i in range(len(tag_col))],
                             "tag": tag_col}),
                   storage.path(key), row_group_size=row_group_size)


def test_the_window_is_exactly_the_files_of_the_selected_tags_and_dates(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    keep = ["out/tag=a/date=2026-01-30/p.parquet",   # date outside the window
            "out/tag=c/date=2026-01-31/p.parquet",   # tag not selected
            "other/tag=a/date=2026-01-31/p.parquet"]  # another prefix
    gone = ["out/tag=a/date=2026-01-31/p.parquet", "out/tag=b/date=2026-02-01/p.parquet",
            "out/tag=b/date=2026-02-01/q.parquet"]
    for key in keep + gone:
        _write(lake, key, 3)
    window = ["2026-01-31", "2026-02-01"]
    assert sorted(window_files(lake, "out", TAG, ["a", "b"], window)) == sorted(gone)
    assert count_rows(lake, keep) == 9
    assert count_rows(lake, []) == 0


def test_the_date_layout_window_is_whole_days(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    keep = ["out/date=2026-01-30/p.parquet", "other/date=2026-01-31/p.parquet"]
    gone = ["out/date=2026-01-31/p.parquet", "out/date=2026-01-31/q.parquet"]
    for key in keep + gone:
        _write_day(lake, key, ["a", "b"])
    assert sorted(window_files(lake, "out", DATE, ["a"], ["2026-01-31"])) == gone


@pytest.mark.parametrize(("written", "asked"), [(TAG, DATE), (DATE, TAG)])
def test_a_prefix_of_the_other_layout_is_refused(tmp_path, written, asked):
    lake = StorageLocation("local", str(tmp_path))
    key = ("out/tag=a/date=2026-01-01/p.parquet" if written == TAG
           else "out/date=2026-01-01/p.parquet")
    _write_day(lake, key, ["a"])
    with pytest.raises(ShopfloorError, match=f"holds the '{written}' layout.*layout='{written}'"):
        window_files(lake, "out", asked, ["a"], ["2026-03-01"])


def test_files_a_lake_merge_retired_or_left_uncommitted_are_not_visible(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    day = "out/date=2026-01-31"
    token, dead = "a" * 32, "b" * 32
    keys = [f"{day}/old.parquet", f"{day}/merged-{token}-0.parquet",
            f"{day}/merged-{dead}-0.parquet", f"{day}/new.parquet"]
    for key in keys:
        _write_day(lake, key, ["a"])
    write_state(lake, day, PartitionState(1, frozenset({token}), frozenset({"old.parquet"})))
    listed = window_files(lake, "out", DATE, [], ["2026-01-31"])
    assert f"{day}/_lake_state.json" in listed
    assert visible_files(lake, listed) == [f"{day}/merged-{token}-0.parquet",
                                           f"{day}/new.parquet"]


def test_rows_by_partition_counts_per_tag_inside_date_files(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    _write_day(lake, "out/date=2026-01-31/p.parquet", ["a", "a", "b", "c", "c", "c"])
    _write_day(lake, "out/date=2026-01-31/q.parquet", ["a"])
    _write_day(lake, "out/date=2026-02-01/p.parquet", ["b"])
    _write_day(lake, "out/date=2026-02-02/p.parquet", ["a"])  # outside the dates asked
    got = rows_by_partition(lake, "out", DATE, ["a", "c"], ["2026-01-31", "2026-02-01"])
    assert got == {("a", "2026-01-31"): 3, ("c", "2026-01-31"): 3}


def test_rows_by_partition_reads_footers_in_the_tag_layout(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    _write(lake, "out/tag=a/date=2026-01-31/p.parquet", 4)
    _write(lake, "out/tag=a/date=2026-01-31/q.parquet", 1)
    _write(lake, "out/tag=b/date=2026-01-31/p.parquet", 2)
    got = rows_by_partition(lake, "out", TAG, ["a"], ["2026-01-31"])
    assert got == {("a", "2026-01-31"): 5}


def test_other_tags_rows_are_counted_and_carried_in_order(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    src = "out/date=2026-01-31/p.parquet"
    _write_day(lake, src, ["a", "b", "b", "c", "d", "d", "d", "e"], row_group_size=2)
    only_mine = "out/date=2026-02-01/p.parquet"
    _write_day(lake, only_mine, ["a", "c"])
    assert other_tag_rows(lake, [src, only_mine], ["a", "c"]) == {src: 6}
    copied = carry_other_tags(lake, [src], "stage", ["a", "c"], row_group_rows=4)
    assert copied == 6
    [dst] = [o.key for o in lake.list_objects("stage")]
    assert dst == "stage/date=2026-01-31/part-carry-00000.parquet"
    table = pq.read_table(lake.path(dst))
    assert table.column("tag").to_pylist() == ["b", "b", "d", "d", "d", "e"]
    assert table.schema == pq.read_table(lake.path(src)).schema  # same types as the output
    meta = pq.ParquetFile(lake.path(dst)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 2]
