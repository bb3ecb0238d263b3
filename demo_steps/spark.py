"""The demo's spark extraction step: seed a small historian in SQLite, extract it with Spark."""

from collections import Counter
from datetime import UTC, date, datetime

from blocks.resolve import load_storage
from flows.spark_extraction import spark_sensor_extraction
from shopfloor.db.schema import get_tables
from shopfloor.historian.lake import is_data_file, partition_of
from shopfloor.historian.seed import HistorianSeed, seed_historian
from tasks import runtime

HISTORIAN = "shopfloor-historian-db"
PREFIX = "sensor_data"
# Two months: the last day of January and the first of February, 200 tags, hourly.
SEED = HistorianSeed(start=datetime(2026, 1, 31, tzinfo=UTC),
                     end=datetime(2026, 2, 2, tzinfo=UTC), n_tags=200, interval_s=3600)


def spark_demo_step() -> list[str]:
    """Seed the historian, run spark-sensor-extraction in local mode, list the partitions."""
    counts = seed_historian(runtime.engine(HISTORIAN), get_tables(None), SEED)
    lines = [f"historian: {SEED.n_tags} tags, "
             + ", ".join(f"{t} {n} rows" for t, n in counts.items())]
    results = spark_sensor_extraction(start=date(2026, 1, 31), end=date(2026, 2, 1),
                                      spark_master="local[2]", num_partitions=2,
                                      output_prefix=PREFIX,
                                      quality_db="shopfloor-warehouse-db")
    for r in results:
        lines.append(f"  {r.month} {r.status}: {r.written_rows} good rows "
                     f"(source {r.source_rows}) in {r.files} files, {r.seconds} s")
    lake = load_storage("shopfloor-lake")
    files = [o.key.removeprefix(PREFIX + "/") for o in lake.list_objects(PREFIX)
             if is_data_file(o.key)]
    by_date = Counter(p.date for p in map(partition_of, files) if p)
    lines.append(f"Parquet files under {lake.url(PREFIX)}: {len(files)} "
                 f"in {len(by_date)} date partitions (tag is a column, rows sorted by tag)")
    lines += [f"  date={d}: {n} file(s)" for d, n in sorted(by_date.items())]
    return lines
