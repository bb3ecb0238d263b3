"""`shopfloor demo`, the command behind `make demo`, run as a user runs it."""

import json
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
    for step in ("set up", "modbus capture", "hourly aggregation", "anomaly detection",
                 "s3 compaction", "spark extraction", "quality and daily rollups"):
        assert f"== {step}" in out
    # one planted anomaly of each kind in the synthetic history, each found
    # the daily rollup equals an independent SQL over raw, and every flow scored its work
    assert "differing from an independent SQL over raw (exact)" in out, out[-3000:]
    planted = [ln for ln in out.splitlines() if ln.strip().startswith("planted ")]
    assert len(planted) == 4 and all(ln.endswith(": found") for ln in planted), planted

    db = sqlite3.connect(home / "shopfloor.db")
    raw = db.execute("SELECT COUNT(*) FROM temperature_raw").fetchone()[0]
    hourly = db.execute("SELECT COALESCE(SUM(sample_count), 0) FROM temperature_hourly "
                        "WHERE loc_id <> 'SYN-01'").fetchone()  # not the synthetic history
    kinds = {k for (k,) in db.execute("SELECT DISTINCT kind FROM anomaly WHERE loc_id = 'SYN-01'")}
    flows = {f for (f,) in db.execute("SELECT DISTINCT flow FROM quality_score")}
    quarantined = db.execute("SELECT COUNT(*) FROM quarantine WHERE source LIKE '%modbus%'"
                             ).fetchone()[0]
    statuses = dict(db.execute("SELECT compression_status, COUNT(*) FROM s3_object "
                               "GROUP BY compression_status").fetchall())
    db.close()
    assert raw > 0 and hourly[0] == raw       # every captured reading is in an hourly row
    assert quarantined > 0                    # the simulated NaN device was quarantined
    assert kinds == {"deviation", "spike", "flatline", "gap"}
    assert len(flows) >= 4, flows  # capture, compaction, hourly aggregation, spark
    # raw is what arrived: the rejected readings are landed too, with their reasons
    landed = [json.loads(line) for f in (home / "raw-logs").rglob("*.json")
              for line in f.read_text().splitlines()]
    rejected = [r for r in landed if r.get("verdict") == "rejected"]
    assert rejected and all(r["reasons"] for r in rejected)
    assert statuses.get("SUCCESS", 0) > 0 and statuses.get("PENDING", 0) == 0
    assert list((home / "lake" / "datalog_v2").rglob("*.parquet"))
    assert list((home / "lake" / "sensor_data").rglob("*.parquet"))
