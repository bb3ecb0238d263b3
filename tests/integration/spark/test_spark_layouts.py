"""The date layout of spark-sensor-extraction (``date=<day>/`` files, ``tag`` a column): one
file per day sorted by tag and time, a run of some tags keeping the other tags' rows of the
days it replaces (local folder and moto S3), a prefix of the other layout refused, and lake
maintenance merging the days."""

import os
import uuid
from collections import Counter
from datetime import date, timedelta

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pyarrow import fs
from sqlalchemy import delete

from blocks.resolve import load_storage
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import historian_data_table
from shopfloor.errors import ShopfloorError
from shopfloor.historian.plan import epoch_ms
from shopfloor.historian.seed import HistorianSeed, seed_historian
from shopfloor.lake import protocol
from shopfloor.lake.merge import MergeSpec, maintain
from tests.integration.spark.conftest import SEED
from tests.integration.spark.test_spark_extraction import _snapshot, as_set, expected_rows, run

pytestmark = pytest.mark.usefixtures("spark")

JAN31, FEB1, FEB2 = date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 2)


def day_files(filesystem, base: str) -> dict[str, list[str]]:
    """``date -> [file paths]`` of the Parquet data files under ``base``."""
    out: dict[str, list[str]] = {}
    for info in filesystem.get_file_info(fs.FileSelector(base, recursive=True)):
        name = info.path.rsplit("/", 1)[-1]
        if info.type == fs.FileType.File and name.endswith(".parquet") and name[0] not in "._":
            day = info.path.rsplit("/", 2)[-2].removeprefix("date=")
            out.setdefault(day, []).append(info.path)
    return {d: sorted(p) for d, p in sorted(out.items())}


def read_days(filesystem, base: str) -> list[dict]:
    return ds.dataset(base, format="parquet", partitioning="hive",
                      filesystem=filesystem).to_table().to_pylist()


def test_a_day_is_one_file_sorted_by_tag_and_time_with_tag_as_a_column(historian_block,
                                                                        lake_block):
    lake, folder = lake_block
    results = run(historian_block, lake, JAN31, FEB1, tag_patterns=["line1/%"],
                  layout="date")
    base = os.path.join(folder, "sensor_data")
    files = day_files(fs.LocalFileSystem(), base)
    assert list(files) == ["2026-01-31", "2026-02-01"]
    assert [len(f) for f in files.values()] == [1, 1]
    assert sum(r.files for r in results) == 2
    expected = expected_rows(SEED, {1}, JAN31, FEB1)
    rows = read_days(None, base)
    assert len(rows) == len(expected) and as_set(rows) == expected
    for [path] in files.values():
        table = pq.read_table(path)
        assert "tag" in table.column_names and "date" not in table.column_names
        keys = list(zip(table.column("tag").to_pylist(), table.column("ts").to_pylist(),
                        strict=True))
        assert keys == sorted(keys) and len({t for t, _ in keys}) == 5


@pytest.fixture(params=["local", "s3"])
def any_lake(request, prefect_harness, tmp_path):
    """A lake block of either kind: ``(block name, pyarrow filesystem, base of the output)``."""
    name = f"lake-{uuid.uuid4().hex[:8]}"
    if request.param == "local":
        from prefect.filesystems import LocalFileSystem

        (tmp_path / "lake").mkdir()
        LocalFileSystem(basepath=str(tmp_path / "lake")).save(name)
        return name, fs.LocalFileSystem(), str(tmp_path / "lake" / "sensor_data")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    S3Bucket(bucket_name=bucket, bucket_folder="lake", credentials=creds).save(name)
    s3 = fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                         endpoint_override=endpoint.removeprefix("http://"), scheme="http")
    return name, s3, f"{bucket}/lake/sensor_data"


def test_a_run_of_some_tags_keeps_the_other_tags_rows_of_the_days_it_replaces(
        pg_engine, historian_tables, historian_block, any_lake):
    seed = HistorianSeed(SEED.start, SEED.end, SEED.n_tags, SEED.interval_s,
                         table_pattern=f"subset_{uuid.uuid4().hex[:6]}_{{yyyy}}_{{mm}}")
    seed_historian(pg_engine, historian_tables, seed)
    lake, filesystem, base = any_lake
    window = {"table_pattern": seed.table_pattern, "layout": "date"}
    run(historian_block, lake, JAN31, FEB2, tag_patterns=["line1/%", "line2/%"], **window)
    line2_before = [r for r in read_days(filesystem, base) if r["tagpath"].startswith("line2/")]
    # the source changes: tag 4 (line1) loses its readings of 2026-02-01
    feb = historian_data_table(historian_tables, seed.table_pattern.format(yyyy="2026", mm="02"))
    with pg_engine.begin() as conn:
        conn.execute(delete(feb).where(feb.c.tagid == 4, feb.c.t_stamp < epoch_ms(FEB2)))
    # only line1 is rerun, for one day: line2's rows of that day must survive
    [res] = run(historian_block, lake, FEB1, FEB1, tag_patterns=["line1/%"], **window)
    line2_feb1 = [r for r in line2_before if str(r["date"]) == "2026-02-01"]
    assert res.status == "ok" and res.carried_rows == len(line2_feb1) > 0
    assert res.deleted_files == 1
    rows = read_days(filesystem, base)
    expected = {e for e in expected_rows(seed, {1, 2}, JAN31, FEB2)
                if not (e[0] == 4 and epoch_ms(FEB1) <= e[1] < epoch_ms(FEB2))}
    assert len(rows) == len(expected) and as_set(rows) == expected
    # the carried rows are the old ones, value for value
    key = ("tagid", "tagpath", "ts", "value", "dataintegrity", "tag")
    got2 = sorted(tuple(r[k] for k in key) for r in rows
                  if r["tagpath"].startswith("line2/") and str(r["date"]) == "2026-02-01")
    assert got2 == sorted(tuple(r[k] for k in key) for r in line2_feb1)
    # the replaced day: the new line1 file and the carried line2 file; others untouched
    files = day_files(filesystem, base)
    assert [len(files[d]) for d in ("2026-01-31", "2026-02-01", "2026-02-02")] == [1, 2, 1]
    # once more, the other subset: nothing lost, nothing doubled
    run(historian_block, lake, FEB1, FEB1, tag_patterns=["line2/%"], **window)
    rows = read_days(filesystem, base)
    assert len(rows) == len(expected) and as_set(rows) == expected


def test_a_prefix_of_the_other_layout_is_refused_and_left_as_it_was(historian_block,
                                                                   lake_block):
    lake, folder = lake_block
    run(historian_block, lake, FEB1, FEB1, tag_patterns=["line3/%"], layout="tag")
    before = _snapshot(folder)
    with pytest.raises(ShopfloorError, match="holds the 'tag' layout"):
        run(historian_block, lake, FEB1, FEB1, tag_patterns=["line3/%"], layout="date")
    assert _snapshot(folder) == before
    assert [f for _, _, f in os.walk(os.path.join(folder, "_extraction")) if f] == []


def test_lake_maintenance_merges_a_day_and_a_later_subset_run_still_keeps_every_row(
        historian_block, lake_block, sqlite_url):
    lake, folder = lake_block
    run(historian_block, lake, FEB1, FEB1, tag_patterns=["line1/%"], layout="date")
    run(historian_block, lake, FEB1, FEB1, tag_patterns=["line2/%"], layout="date")
    base = os.path.join(folder, "sensor_data")
    assert len(day_files(fs.LocalFileSystem(), base)["2026-02-01"]) == 2
    storage = load_storage(lake)
    engine = make_engine(sqlite_url)
    spec = MergeSpec(storage, "sensor_data", engine, init_db(engine))
    [res] = maintain(spec, FEB1 + timedelta(days=10), 3, lambda: uuid.uuid4().hex)
    assert (res.status, res.files_in, res.files_out) == ("merged", 2, 1), res.message
    expected = expected_rows(SEED, {1, 2}, FEB1, FEB1)
    merged = protocol.read_lake(storage, "sensor_data")
    assert merged.num_rows == len(expected) and as_set(merged.to_pylist()) == expected
    [path] = day_files(fs.LocalFileSystem(), base)["2026-02-01"]
    table = pq.read_table(path)
    keys = list(zip(table.column("tag").to_pylist(), table.column("ts").to_pylist(),
                    strict=True))
    assert keys == sorted(keys)
    # a rerun of line1 over the merged day carries line2 out of the merged file
    [again] = run(historian_block, lake, FEB1, FEB1, tag_patterns=["line1/%"], layout="date")
    assert again.carried_rows == len(expected_rows(SEED, {2}, FEB1, FEB1))
    rows = read_days(None, base)
    assert len(rows) == len(expected) and as_set(rows) == expected
    assert Counter(r["tagpath"][:5] for r in rows) == Counter(
        {"line1": len(expected_rows(SEED, {1}, FEB1, FEB1)),
         "line2": len(expected_rows(SEED, {2}, FEB1, FEB1))})
    engine.dispose()
