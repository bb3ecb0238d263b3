"""Pure parts of the tag lake export: months, file ranges, the upsert of a partition, and
the maintenance's closing of month partitions."""

from datetime import UTC, date, datetime

import pyarrow as pa

from shopfloor.lake.plan import is_closed, partition_day
from shopfloor.tags.lake_export import (
    SCHEMA,
    ExportStats,
    export_verdict,
    file_range,
    micros,
    month_bounds,
    months_between,
    partition_key,
    to_table,
    upsert_rows,
)


def row(ts: datetime, value: float, ingested: datetime) -> tuple:
    return (7, ts, value, None, 192, None, ingested)


def test_months_and_their_bounds():
    assert months_between(datetime(2025, 11, 30, 23, tzinfo=UTC),
                          datetime(2026, 2, 1, tzinfo=UTC)) == [
        "2025-11", "2025-12", "2026-01", "2026-02"]
    assert month_bounds("2025-12") == (datetime(2025, 12, 1, tzinfo=UTC),
                                       datetime(2026, 1, 1, tzinfo=UTC))
    assert partition_key("tag_samples", 7, "2026-01") == "tag_samples/tag_id=7/month=2026-01"


def test_a_file_names_its_range_and_merged_files_do_not():
    ts = datetime(2026, 3, 1, 0, 0, 5, 123456, tzinfo=UTC)
    assert micros(ts) == int(ts.timestamp()) * 1_000_000 + 123456
    assert file_range("p/part-run-1-a1b2c3d4-100-200.parquet") == (100, 200)
    assert file_range("p/part-0123456789-100-200.parquet") == (100, 200)
    assert file_range("p/merged-" + "1" * 32 + "-0.parquet") is None


def test_the_upsert_keeps_one_row_per_ts_the_batch_s_version():
    t = [datetime(2026, 3, 1, 0, 0, s, tzinfo=UTC) for s in range(4)]
    old, new = datetime(2026, 3, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, 2, tzinfo=UTC)
    existing = to_table([row(t[0], 1.0, old), row(t[1], 2.0, old), row(t[3], 4.0, old)])
    batch = to_table([row(t[1], 20.0, new), row(t[2], 30.0, new)])
    out = upsert_rows(existing, batch)
    assert out.schema == SCHEMA
    assert out.column("ts").to_pylist() == t
    assert out.column("value").to_pylist() == [1.0, 20.0, 30.0, 4.0]
    assert out.column("quality").type == pa.int16()


def test_a_month_partition_closes_after_its_last_day_and_the_grace():
    part = "tag_samples/tag_id=7/month=2026-02"
    assert partition_day(part) == date(2026, 2, 28)
    assert not is_closed(part, date(2026, 3, 3), 3)
    assert is_closed(part, date(2026, 3, 4), 3)
    assert partition_day("tag_samples/tag_id=7/month=2026-13") is None
    assert partition_day("sensor_data/date=2026-01-05") == date(2026, 1, 5)


def test_an_idle_first_run_names_the_time_it_looked_up_to_not_none():
    """The first run has no watermark: its Idle message said "since None"."""
    upto = datetime(2026, 12, 7, 2, 25, 39, tzinfo=UTC)
    first = export_verdict(ExportStats(since=None, upto=upto, watermark=upto))
    assert first.kind == "idle"
    assert "None" not in first.message
    assert first.message == "no tag samples ingested up to 2026-12-07 02:25:39 UTC (first run)"
    since = datetime(2026, 12, 7, 1, 20, tzinfo=UTC)
    later = export_verdict(ExportStats(since=since, upto=upto, watermark=since))
    assert later.message == ("no tag samples ingested from 2026-12-07 01:20:00 to "
                             "2026-12-07 02:25:39 UTC")
