"""A rerun of spark-sensor-extraction never destroys good output: a month that fails
part-way leaves the previous output byte for byte, and a run killed with ``kill -9``
between staging and replacing (or in the middle of replacing) is finished or cleaned by
the next run, which leaves exactly one copy of every row."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import text

from shopfloor.compaction.faults import PAUSE_AT, PAUSE_FILE
from shopfloor.errors import ShopfloorError
from shopfloor.historian.publish import AREA
from shopfloor.historian.seed import HistorianSeed, seed_historian
from tests.integration.spark.conftest import SEED
from tests.integration.spark.test_spark_extraction import (
    as_set,
    expected_rows,
    read_output,
    run,
)

pytestmark = pytest.mark.usefixtures("spark")

REPO = Path(__file__).resolve().parents[3]


def sha256_map(folder: str) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (checksums included)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(
                Path(path).read_bytes()).hexdigest()
    return out


def leftovers(folder: str) -> dict[str, str]:
    """Files of the staging and manifest area (nothing once a run has finished)."""
    return sha256_map(os.path.join(folder, AREA))


def test_a_failed_rerun_leaves_the_previous_output_byte_for_byte(
        pg_engine, historian_tables, historian_block, lake_block):
    seed = HistorianSeed(SEED.start, SEED.end, SEED.n_tags, SEED.interval_s,
                         table_pattern="dropcol_{yyyy}_{mm}")
    seed_historian(pg_engine, historian_tables, seed)
    lake, folder = lake_block
    params = {"tag_patterns": ["line1/%"], "table_pattern": seed.table_pattern}
    window = (date(2026, 2, 1), date(2026, 2, 2))
    first = run(historian_block, lake, *window, **params)
    assert [r.status for r in first] == ["ok"] and first[0].written_rows > 0
    output = os.path.join(folder, "sensor_data")
    before = sha256_map(output)
    assert sum(k.endswith(".parquet") for k in before) == first[0].files

    # the monthly table loses a column the extraction reads: the rerun fails part-way
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE dropcol_2026_02 DROP COLUMN floatvalue"))
    with pytest.raises(ShopfloorError, match=r"failed month\(s\): 2026-02: .*floatvalue"):
        run(historian_block, lake, *window, **params)
    assert sha256_map(output) == before
    assert leftovers(folder) == {}


CHILD = textwrap.dedent("""
    from datetime import date
    from flows.spark_extraction import spark_sensor_extraction
    spark_sensor_extraction(start=date(2026, 2, 1), end=date(2026, 2, 2),
                            historian_db={historian!r}, lake={lake!r},
                            tag_patterns=["line2/%"], spark_master="local[1]",
                            num_partitions=2, spark_conf={{"spark.ui.enabled": "false"}},
                            recheck_days=0)
""")


def _run_child_until(point: str, historian: str, lake: str, marker: Path) -> None:
    """Run the extraction in a child process until it pauses at ``point``, then kill -9 it
    and its Spark JVM (its process group)."""
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           PAUSE_AT: point, PAUSE_FILE: str(marker)}
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(historian=historian,
                                                                 lake=lake)],
                             cwd=REPO, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # a hung child fails the test instead of blocking
    try:
        while not marker.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"child did not reach {point} in 600 s")
            if child.poll() is not None:
                pytest.fail(f"child ended before {point}: {child.stderr.read().decode()[-3000:]}")
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stderr.close()


@pytest.mark.parametrize("point", ["after_stage", "mid_publish"])
def test_kill_9_between_staging_and_replacing_then_a_rerun_leaves_every_row_once(
        point, historian_block, lake_block, tmp_path):
    lake, folder = lake_block
    window = (date(2026, 2, 1), date(2026, 2, 2))
    run(historian_block, lake, *window, tag_patterns=["line2/%"])
    output = os.path.join(folder, "sensor_data")
    before = sha256_map(output)

    _run_child_until(point, historian_block, lake, tmp_path / "paused")
    left = leftovers(folder)
    if point == "after_stage":  # staged and checked, nothing replaced yet
        assert sha256_map(output) == before
        assert left and all(k.startswith("sensor_data/staging/") for k in left)
    else:  # the manifest is written and one file moved: the replace is half done
        assert any(k.startswith("sensor_data/manifests/") for k in left)
        assert sha256_map(output) != before

    results = run(historian_block, lake, *window, tag_patterns=["line2/%"])
    expected = expected_rows(SEED, {2}, *window)
    assert [(r.status, r.source_rows) for r in results] == [("ok", len(expected))]
    rows = read_output(output)
    assert len(rows) == len({(r["tag"], r["ts"]) for r in rows}) == len(expected)
    assert as_set(rows) == expected
    assert leftovers(folder) == {}
