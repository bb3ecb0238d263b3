"""Lake layout: which files belong to a window, deleting exactly them, counting rows."""

import pyarrow as pa
import pyarrow.parquet as pq

from shopfloor.historian.lake import (
    count_rows,
    delete_window,
    is_data_file,
    partition_of,
    window_files,
)
from shopfloor.storage import StorageLocation


def test_partition_of_reads_tag_and_date_from_a_key():
    assert partition_of("sensor_data/tag=a_b/date=2026-01-31/part-0.parquet") == (
        "a_b", "2026-01-31")
    assert partition_of("tag=a/date=2026-01-31/x.parquet") == ("a", "2026-01-31")
    assert partition_of("sensor_data/tag=a/part-0.parquet") is None
    assert partition_of("sensor_data/tag=a/date=2026-1-3/part-0.parquet") is None


def test_only_visible_parquet_files_are_data():
    assert is_data_file("p/tag=a/date=2026-01-01/part-00000-x.c000.snappy.parquet")
    assert not is_data_file("p/tag=a/date=2026-01-01/.part-00000-x.snappy.parquet.crc")
    assert not is_data_file("p/_SUCCESS")


def _write(storage: StorageLocation, key: str, rows: int) -> None:
    path = storage.url(key)
    storage.filesystem().makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    pq.write_table(pa.table({"v": list(range(rows))}), path)


def test_delete_window_removes_exactly_the_window_of_the_selected_tags(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    keep = ["out/tag=a/date=2026-01-30/p.parquet",   # date outside the window
            "out/tag=c/date=2026-01-31/p.parquet",   # tag not selected
            "other/tag=a/date=2026-01-31/p.parquet"]  # another prefix
    gone = ["out/tag=a/date=2026-01-31/p.parquet", "out/tag=b/date=2026-02-01/p.parquet",
            "out/tag=b/date=2026-02-01/q.parquet"]
    for key in keep + gone:
        _write(lake, key, 3)
    window = ["2026-01-31", "2026-02-01"]
    assert sorted(window_files(lake, "out", ["a", "b"], window)) == sorted(gone)
    assert delete_window(lake, "out", ["a", "b"], window) == 3
    assert sorted(o.key for o in lake.list_objects("")) == sorted(keep)
    assert count_rows(lake, keep) == 9
    assert count_rows(lake, []) == 0
