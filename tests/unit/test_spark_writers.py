"""The executor-side Parquet writer, run here on plain Arrow batches (no Spark started)."""

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from shopfloor.spark.writers import _PartitionFiles, _runs


def _batch(rows: list[tuple[str, str, int]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"tagid": v, "value": float(v), "tag": t, "date": d} for t, d, v in rows])


def test_sorted_batches_become_capped_files_with_deterministic_names(tmp_path):
    rows = [("a", "2026-01-01", i) for i in range(5)] + [("a", "2026-01-02", 9),
                                                        ("b", "2026-01-01", 7)]
    files = _PartitionFiles(fs.LocalFileSystem(), str(tmp_path), pid=3, max_rows=2)
    # a group continues from one batch into the next
    for batch in (_batch(rows[:3]), _batch(rows[3:])):
        for key, table in _runs(batch):
            files.add(key, table)
    files.close()
    written = {p.removeprefix(str(tmp_path) + "/"): n for p, n in files.written}
    assert written == {
        "tag=a/date=2026-01-01/part-00003-0000.parquet": 2,
        "tag=a/date=2026-01-01/part-00003-0001.parquet": 2,
        "tag=a/date=2026-01-01/part-00003-0002.parquet": 1,
        "tag=a/date=2026-01-02/part-00003-0000.parquet": 1,
        "tag=b/date=2026-01-01/part-00003-0000.parquet": 1,
    }
    table = pq.read_table(tmp_path / "tag=a/date=2026-01-01/part-00003-0002.parquet")
    assert table.column_names == ["tagid", "value"]  # partition values live in the path
    assert table.column("tagid").to_pylist() == [4]
