"""The spark-sensor-extraction flow: local Spark against real PostgreSQL, a local lake, moto S3."""

import os
import uuid
from datetime import date

import pyarrow.dataset as ds
import pytest
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pyarrow import fs
from sqlalchemy import delete, text

from flows.spark_extraction import spark_sensor_extraction
from shopfloor.db.schema import historian_data_table
from shopfloor.errors import ShopfloorError
from shopfloor.historian.plan import epoch_ms
from shopfloor.historian.seed import GOOD, HistorianSeed, reading, seed_historian
from tests.integration.spark.conftest import SEED

pytestmark = pytest.mark.usefixtures("spark")


def expected_rows(seed: HistorianSeed, lines: set[int], start: date, end: date,
                  codes: tuple[int, ...] = (GOOD,)) -> set[tuple[int, int, float]]:
    """``(tagid, t_ms, value)`` the extraction must write, computed from the seed's formula."""
    lo, hi = epoch_ms(start), epoch_ms(end) + 86_400_000
    out = set()
    for tag_id in range(1, seed.n_tags + 1):
        if tag_id % seed.lines + 1 not in lines:
            continue
        for t_ms in range(max(lo, seed.origin_ms), min(hi, seed.end_ms), seed.step_ms):
            r = reading(seed, tag_id, t_ms)
            if r["dataintegrity"] in codes:
                value = r["floatvalue"] if r["floatvalue"] is not None else r["intvalue"]
                out.add((tag_id, t_ms, float(value)))
    return out


def read_output(path: str, filesystem=None) -> list[dict]:
    dataset = ds.dataset(path, format="parquet", partitioning="hive", filesystem=filesystem)
    return dataset.to_table().to_pylist()


def as_set(rows: list[dict]) -> set[tuple[int, int, float]]:
    return {(r["tagid"], int(r["ts"].timestamp() * 1000), r["value"]) for r in rows}


def run(historian: str, lake: str, start: date, end: date, **params):
    params.setdefault("recheck_days", 0)  # these tests are about the window itself
    return spark_sensor_extraction(start=start, end=end, historian_db=historian, lake=lake,
                                   spark_master="local[2]", num_partitions=2, **params)


def test_extracts_good_readings_of_matching_tags_partitioned_by_tag_and_date(
        historian_block, lake_block):
    lake, folder = lake_block
    results = run(historian_block, lake, date(2026, 1, 31), date(2026, 2, 1),
                  tag_patterns=["line1/%"], layout="tag")
    expected = expected_rows(SEED, {1}, date(2026, 1, 31), date(2026, 2, 1))
    assert [(r.month, r.status, r.source_rows, r.written_rows) for r in results] == [
        ("2026-01", "ok", len(expected) // 2, len(expected) // 2),
        ("2026-02", "ok", len(expected) // 2, len(expected) // 2)]
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert as_set(rows) == expected and len(rows) == len(expected)
    assert {r["dataintegrity"] for r in rows} == {GOOD}
    # Hive partitions: the sanitised tag path and the UTC date; nothing outside the window
    assert {str(r["date"]) for r in rows} == {"2026-01-31", "2026-02-01"}
    assert all(r["tagpath"].startswith("line1/") for r in rows)
    assert all(r["tag"].startswith(r["tagpath"].replace("/", "_") + "_") for r in rows)
    assert all(r["ts"].strftime("%Y-%m-%d") == str(r["date"]) for r in rows)
    # day-aligned read ranges: one file per (tag, date) partition
    files = ds.dataset(os.path.join(folder, "sensor_data"), format="parquet").files
    assert len(files) == len({(r["tag"], str(r["date"])) for r in rows}) == 5 * 2


def test_a_missing_month_is_reported_and_the_others_are_extracted(historian_block,
                                                                   lake_block):
    lake, folder = lake_block
    results = run(historian_block, lake, date(2026, 2, 2), date(2026, 3, 1),
                  tag_patterns=["line2/%"])
    assert [(r.month, r.status) for r in results] == [("2026-02", "ok"), ("2026-03", "missing")]
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert as_set(rows) == expected_rows(SEED, {2}, date(2026, 2, 2), date(2026, 3, 1))


def test_quality_filter_keeps_only_the_listed_codes(historian_block, lake_block):
    lake, folder = lake_block
    run(historian_block, lake, date(2026, 1, 30), date(2026, 1, 30), tag_patterns=["line3/%"],
        good_quality=[0])
    rows = read_output(os.path.join(folder, "sensor_data"))
    expected = expected_rows(SEED, {3}, date(2026, 1, 30), date(2026, 1, 30), codes=(0,))
    assert rows and as_set(rows) == expected
    assert {r["dataintegrity"] for r in rows} == {0}


def test_files_are_capped_by_max_records_per_file(historian_block, lake_block):
    lake, folder = lake_block
    run(historian_block, lake, date(2026, 1, 30), date(2026, 1, 30), tag_patterns=["line4/%"],
        max_records_per_file=5)
    dataset = ds.dataset(os.path.join(folder, "sensor_data"), format="parquet")
    counts = [f.count_rows() for f in dataset.get_fragments()]
    assert max(counts) == 5 and len(counts) > 5
    assert sum(counts) == len(expected_rows(SEED, {4}, date(2026, 1, 30), date(2026, 1, 30)))


def _snapshot(folder: str) -> dict[str, float]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".parquet") and not name.startswith("."):
                path = os.path.join(root, name)
                out[os.path.relpath(path, folder)] = os.stat(path).st_mtime_ns
    return out


@pytest.mark.parametrize("layout", ["tag", "date"])
def test_rerun_replaces_exactly_the_window_partitions(pg_engine, historian_tables,
                                                      historian_block, lake_block, layout):
    seed = HistorianSeed(SEED.start, SEED.end, SEED.n_tags, SEED.interval_s,
                         table_pattern=f"rerun_{layout}_{{yyyy}}_{{mm}}")
    seed_historian(pg_engine, historian_tables, seed)
    lake, folder = lake_block
    params = {"tag_patterns": ["line1/%", "line2/%"], "table_pattern": seed.table_pattern,
              "layout": layout}
    run(historian_block, lake, date(2026, 1, 30), date(2026, 2, 2), **params)
    before = _snapshot(folder)
    # the source changes: tag 4 loses its readings of 2026-02-01
    feb = historian_data_table(historian_tables, f"rerun_{layout}_2026_02")
    with pg_engine.begin() as conn:
        conn.execute(delete(feb).where(feb.c.tagid == 4, feb.c.t_stamp < epoch_ms(
            date(2026, 2, 2))))
    results = run(historian_block, lake, date(2026, 2, 1), date(2026, 2, 1), **params)
    assert results[0].deleted_files == sum("date=2026-02-01" in k for k in before)
    after = _snapshot(folder)
    outside = {k: v for k, v in before.items() if "date=2026-02-01" not in k}
    assert {k: v for k, v in after.items() if "date=2026-02-01" not in k} == outside
    expected = expected_rows(seed, {1, 2}, date(2026, 1, 30), date(2026, 2, 2))
    expected = {e for e in expected
                if not (e[0] == 4 and epoch_ms(date(2026, 2, 1)) <= e[1] < epoch_ms(
                    date(2026, 2, 2)))}
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert len(rows) == len(expected) and as_set(rows) == expected
    # and once more: same rows, no duplicates
    run(historian_block, lake, date(2026, 2, 1), date(2026, 2, 1), **params)
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert len(rows) == len(expected) and as_set(rows) == expected


def test_a_failed_month_does_not_undo_the_finished_ones(pg_engine, historian_tables,
                                                        historian_block, lake_block):
    seed = HistorianSeed(SEED.start, SEED.end, SEED.n_tags, SEED.interval_s,
                         table_pattern="broken_{yyyy}_{mm}")
    seed_historian(pg_engine, historian_tables, seed)
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE broken_2026_02 DROP COLUMN floatvalue"))
    lake, folder = lake_block
    with pytest.raises(ShopfloorError, match="2026-02") as err:
        run(historian_block, lake, date(2026, 1, 31), date(2026, 2, 1),
            tag_patterns=["line3/%"], table_pattern=seed.table_pattern)
    assert "2026-01" not in str(err.value)
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert as_set(rows) == expected_rows(seed, {3}, date(2026, 1, 31), date(2026, 1, 31))


@pytest.fixture
def s3_lake(prefect_harness, s3_endpoint, s3_bucket) -> tuple[str, str]:
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    name = f"s3-lake-{uuid.uuid4().hex[:8]}"
    S3Bucket(bucket_name=s3_bucket, bucket_folder="lake", credentials=creds).save(name)
    return name, s3_bucket


@pytest.mark.parametrize("layout", ["tag", "date"])
def test_writes_to_s3_from_the_executors_without_hadoop_aws(historian_block, s3_lake,
                                                            s3_endpoint, layout):
    lake, bucket = s3_lake
    window = (date(2026, 1, 31), date(2026, 2, 1))
    results = run(historian_block, lake, *window, tag_patterns=["line3/%"], layout=layout)
    assert {r.writer for r in results} == {"arrow-s3"}
    s3 = fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                         endpoint_override=s3_endpoint.removeprefix("http://"), scheme="http")
    base = f"{bucket}/lake/sensor_data"
    keys = sorted(i.path for i in s3.get_file_info(fs.FileSelector(base, recursive=True))
                  if i.type == fs.FileType.File)
    assert keys and all(k.rsplit("/", 1)[-1].startswith("part-") for k in keys)
    expected = expected_rows(SEED, {3}, *window)
    rows = read_output(base, filesystem=s3)
    assert len(rows) == len(expected) and as_set(rows) == expected
    # a rerun replaces every file (new names carry the new run's token): nothing added,
    # nothing lost, and no staging or manifest left in the bucket
    run(historian_block, lake, *window, tag_patterns=["line3/%"], layout=layout)
    again = sorted(i.path for i in s3.get_file_info(fs.FileSelector(base, recursive=True))
                   if i.type == fs.FileType.File)
    assert len(again) == len(keys) and not set(again) & set(keys)
    assert len(read_output(base, filesystem=s3)) == len(expected)
    area = s3.get_file_info(fs.FileSelector(f"{bucket}/lake/_extraction", recursive=True,
                                            allow_not_found=True))
    assert [i.path for i in area if i.type == fs.FileType.File] == []


def test_a_sqlite_historian_is_read_through_jdbc(prefect_harness, sqlite_url, historian_tables,
                                                 lake_block):
    from blocks.bootstrap import connector_from_url
    from shopfloor.db.engine import make_engine

    engine = make_engine(sqlite_url)
    seed_historian(engine, historian_tables, SEED)
    name = f"hist-sqlite-{uuid.uuid4().hex[:8]}"
    connector_from_url(sqlite_url).save(name)
    lake, folder = lake_block
    results = run(name, lake, date(2026, 2, 1), date(2026, 2, 2), tag_patterns=["line2/%"])
    assert [r.status for r in results] == ["ok"]
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert as_set(rows) == expected_rows(SEED, {2}, date(2026, 2, 1), date(2026, 2, 2))
    engine.dispose()


@pytest.mark.mariadb
def test_a_mariadb_historian_is_read_through_jdbc(prefect_harness, mariadb_url, historian_tables,
                                                  lake_block):
    from blocks.bootstrap import connector_from_url
    from shopfloor.db.engine import make_engine

    engine = make_engine(mariadb_url)
    seed_historian(engine, historian_tables, SEED)
    name = f"hist-maria-{uuid.uuid4().hex[:8]}"
    connector_from_url(mariadb_url).save(name)
    lake, folder = lake_block
    results = run(name, lake, date(2026, 1, 31), date(2026, 2, 1), tag_patterns=["line4/%"])
    assert [r.status for r in results] == ["ok", "ok"]
    rows = read_output(os.path.join(folder, "sensor_data"))
    assert as_set(rows) == expected_rows(SEED, {4}, date(2026, 1, 31), date(2026, 2, 1))
    engine.dispose()


def test_each_published_month_leaves_a_quality_row(historian_block, lake_block, pg_engine):
    from sqlalchemy import select

    from shopfloor.db.engine import init_db

    tables = init_db(pg_engine, only=["quality_score"])
    q = tables.quality_score
    with pg_engine.begin() as conn:
        conn.execute(delete(q).where(q.c.flow == "spark-sensor-extraction"))
    lake, _ = lake_block
    results = run(historian_block, lake, date(2026, 1, 31), date(2026, 2, 1),
                  tag_patterns=["line1/%"], quality_db=historian_block)
    with pg_engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(
            select(q).where(q.c.flow == "spark-sensor-extraction").order_by(q.c.subject))
            .mappings()]
    assert [r["subject"] for r in rows] == ["2026-01 sqlt_data_1_2026_01",
                                            "2026-02 sqlt_data_1_2026_02"]
    for row, result in zip(rows, results, strict=True):
        assert (row["rows_in"], row["expected"]) == (result.written_rows, result.source_rows)
        assert row["rows_in"] > 0 and row["overall"] == 1.0 == result.q_overall
    # The matching historian tags are registered in quality_db's tag registry, once.
    te = tables.sqlth_te
    with pg_engine.connect() as conn:
        paths = {r.tagpath: r.id for r in conn.execute(
            select(te.c.tagpath, te.c.id).where(te.c.tagpath.like("line1/%")).order_by(te.c.id))}
        registered = {r.name: r.source_name for r in conn.execute(
            select(tables.tags).where(tables.tags.c.device == historian_block))}
    assert paths and registered == {p: f"sqlth_te:{i}" for p, i in paths.items()}
