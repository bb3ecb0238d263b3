"""`shopfloor demo`, the command behind `make demo`, run as a user runs it."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)


def test_demo_runs_the_whole_chain_on_embedded_defaults(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "SHOPFLOOR_", "AWS_"))}
    env.update(SHOPFLOOR_HOME=str(home), PREFECT_HOME=str(home / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", SPARK_LOCAL_IP="127.0.0.1")
    res = subprocess.run([str(Path(sys.executable).with_name("shopfloor")), "demo"], env=env,
                         capture_output=True, text=True, timeout=840)
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    for step in ("set up", "modbus capture", "hourly aggregation", "s3 compaction",
                 "spark extraction"):
        assert f"== {step}" in out

    db = sqlite3.connect(home / "shopfloor.db")
    raw = db.execute("SELECT COUNT(*) FROM temperature_raw").fetchone()[0]
    hourly = db.execute("SELECT COALESCE(SUM(sample_count), 0) FROM temperature_hourly").fetchone()
    quarantined = db.execute("SELECT COUNT(*) FROM quarantine WHERE source LIKE '%modbus%'"
                             ).fetchone()[0]
    statuses = dict(db.execute("SELECT compression_status, COUNT(*) FROM s3_object "
                               "GROUP BY compression_status").fetchall())
    db.close()
    assert raw > 0 and hourly[0] == raw       # every captured reading is in an hourly row
    assert quarantined > 0                    # the simulated NaN device was quarantined
    assert statuses.get("SUCCESS", 0) > 0 and statuses.get("PENDING", 0) == 0
    assert list((home / "lake" / "datalog_v2").rglob("*.parquet"))
    assert list((home / "lake" / "sensor_data").rglob("*.parquet"))
