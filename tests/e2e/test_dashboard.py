"""`shopfloor dashboard` in a real browser: headless Chromium (Debian's) driven by Playwright.

The test fills a warehouse and a metadata database (SQLite files behind real Prefect
blocks) with known rows, serves the page with the CLI, and checks that the numbers the
page shows equal what independent SQL over the same databases says. With
``SHOPFLOOR_SCREENSHOT=1`` it also saves ``docs/img/dashboard.png`` for the README.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import insert

from blocks.bootstrap import connector_from_url
from shopfloor.dashboard.tables import anomaly_table, quality_table
from shopfloor.db.engine import init_db, make_engine
from tests.conftest import free_port
from tests.e2e.servers import ROOT, clean_env, stop

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is missing (scripts/ensure-system-deps.sh)"),
]
LIMITS = {"temperature_min": 15.0, "temperature_max": 30.0, "humidity_min": 20.0,
          "humidity_max": 80.0, "pcv_temperature_min": 10.0, "pcv_temperature_max": 60.0}


def raw(loc: str, device: str, at: datetime, temperature: float) -> dict:
    return {"loc_id": loc, "capture_dt": at, "temperature": temperature, "humidity": 45.0,
            "pcv_temperature": 30.0, "device": device, "ingested_at": at}


def hourly(loc: str, day: datetime, hh: int, t_max: float, t_avg: float) -> dict:
    return {"loc_id": loc, "ymd": day.strftime("%Y%m%d"), "hh": f"{hh:02d}",
            "temperature_max": t_max, "temperature_avg": t_avg, "humidity_max": 50.0,
            "humidity_avg": 45.0, "pcv_temperature_max": 31.0, "pcv_temperature_avg": 30.0,
            "sample_count": 720, "updated_at": day}


def fill_warehouse(url: str, now: datetime) -> None:
    engine = make_engine(url)
    tables = init_db(engine)
    readings = [raw("L01", "plc-1", now - timedelta(minutes=5 * k + 1), 20.0 + k % 7)
                for k in range(72)]  # six hours of one reading per five minutes
    readings += [raw("L02", "plc-2", now - timedelta(minutes=40), 22.0),
                 raw("L03", "plc-3", now - timedelta(hours=3), 24.0)]
    days = [now - timedelta(days=d) for d in (2, 1, 0)]
    rows = [hourly(loc, day, hh, 20.0 + d + hh / 10 + (5 if loc == "L02" else 0), 19.0 + d)
            for loc in ("L01", "L02") for d, day in enumerate(days) for hh in range(0, 24, 3)]
    reasons = json.dumps([{"column": "temperature", "check": "not_nullable", "value": "nan"}])
    with engine.begin() as conn:
        conn.execute(insert(tables.location), [
            {"loc_id": loc, "name": f"line {loc}", "site": "P1", "active": True, **LIMITS}
            for loc in ("L01", "L02", "L03")])
        conn.execute(insert(tables.temperature_raw), readings)
        conn.execute(insert(tables.temperature_hourly), rows)
        conn.execute(insert(tables.quarantine), [
            {"source": "modbus-capture", "record": "{}", "reasons": reasons, "run_id": "r",
             "quarantined_at": now - timedelta(hours=h)} for h in (1, 2, 5)])
        for table in (anomaly_table(tables), quality_table(tables)):
            table.create(conn, checkfirst=True)
        conn.execute(insert(anomaly_table(tables)), [
            {"kind": "spike", "loc_id": "L01", "measure": "temperature",
             "hour_start": now.replace(minute=0, second=0, microsecond=0)
             - timedelta(days=1), "hours": 1, "score": 8.0, "detail": "{}", "run_id": "r",
             "detected_at": now}])
        conn.execute(insert(quality_table(tables)), [
            {"flow": flow, "subject": "x", "window_start": now - timedelta(hours=h),
             "window_end": now - timedelta(hours=h - 1), "completeness": 1.0,
             "validity": 0.9, "uniqueness": 1.0, "timeliness": 1.0, "overall": 0.975,
             "rows_in": 100, "run_id": "r", "recorded_at": now}
            for flow in ("modbus-capture", "hourly-aggregation") for h in range(1, 12)])
    engine.dispose()


def fill_metadata(url: str, now: datetime) -> None:
    engine = make_engine(url)
    tables = init_db(engine)
    objects = ([("D01", "PENDING")] * 3 + [("D01", "FAILED")] + [("D02", "CLAIMED")] * 2
               + [("D02", "SUCCESS")] * 5 + [("D03", "SUCCESS")])
    with engine.begin() as conn:
        conn.execute(insert(tables.s3_object), [
            {"key": f"raw/{d}/{i}.json", "key_hash": f"{i:064d}", "distrik": d,
             "discovered_at": now, "compression_status": s, "attempts": 0}
            for i, (d, s) in enumerate(objects)])
        conn.execute(insert(tables.quarantine), [
            {"source": "s3-compaction", "record": "{}", "reasons": "[]", "run_id": "r",
             "quarantined_at": now - timedelta(hours=1)}] * 2)
    engine.dispose()


def expected_numbers(warehouse: Path, metadata: Path, now: datetime) -> dict[str, str]:
    """What the page must show, by SQL written independently of the dashboard's queries."""
    wh, md = sqlite3.connect(warehouse), sqlite3.connect(metadata)
    online_since = (now - timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S")
    week = (now - timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S")
    online = wh.execute("SELECT COUNT(*) FROM (SELECT MAX(capture_dt) AS last FROM "
                        "temperature_raw GROUP BY loc_id, device) WHERE last >= ?",
                        (online_since,)).fetchone()[0]
    newest = datetime.fromisoformat(wh.execute(
        "SELECT MAX(capture_dt) FROM temperature_raw").fetchone()[0]).replace(tzinfo=UTC)
    day, day_max = wh.execute(
        "SELECT ymd, MAX(temperature_max) FROM temperature_hourly WHERE loc_id = 'L02' "
        "GROUP BY ymd ORDER BY ymd DESC LIMIT 1").fetchone()
    quarantined = sum(db.execute("SELECT COUNT(*) FROM quarantine WHERE quarantined_at >= ?",
                                 (week,)).fetchone()[0] for db in (wh, md))
    backlog = dict(md.execute(
        "SELECT distrik, COUNT(*) FROM s3_object WHERE compression_status IN "
        "('PENDING', 'CLAIMED', 'FAILED') GROUP BY distrik").fetchall())
    wh.close()
    md.close()
    assert (now - newest).total_seconds() < 240  # so the page, a little later, says < 5 min
    return {"Devices online": str(online), "Newest reading age": "< 5 min",
            f"Daily max L02 {day}": f"{day_max:.2f}", "Quarantined": str(quarantined),
            "Compaction backlog": str(sum(backlog.values())),
            **{f"Backlog {d}": str(n) for d, n in backlog.items()}}


@pytest.fixture
def dashboard(tmp_path, prefect_harness):
    """The page served by `shopfloor dashboard` on known data; yields (url, expected)."""
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    warehouse, metadata = tmp_path / "warehouse.db", tmp_path / "metadata.db"
    names = {}
    for role, path in (("warehouse", warehouse), ("metadata", metadata)):
        url = f"sqlite+pysqlite:///{path}"
        (fill_warehouse if role == "warehouse" else fill_metadata)(url, now)
        names[role] = f"dash-{role}-{tag}"
        connector_from_url(url).save(names[role], overwrite=True)
    port = free_port()
    env = {**clean_env(), "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("shopfloor")), "dashboard", "--port", str(port),
         "--warehouse-db", names["warehouse"], "--metadata-db", names["metadata"]],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "dashboard.log")
        yield f"http://127.0.0.1:{port}", expected_numbers(warehouse, metadata, now)
    finally:
        stop(proc, 2, timeout=20)
        log.close()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"dashboard not healthy in {timeout} s: {log.read_text()[-3000:]}")


def metric_values(page, labels: list[str]) -> dict[str, str]:
    found = {}
    for label in labels:
        metric = page.get_by_test_id("stMetric").filter(
            has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
        found[label] = metric.get_by_test_id("stMetricValue").inner_text().strip()
    return found


def test_the_page_shows_the_databases_numbers(dashboard):
    from playwright.sync_api import sync_playwright

    url, expected = dashboard
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        # The last panel's metric appears when the whole script has run once; the first
        # load includes loading the blocks, so the wait is generous.
        backlog = page.get_by_test_id("stMetricLabel").get_by_text("Backlog D01", exact=True)
        backlog.wait_for(timeout=90_000)
        page.get_by_text("Quality score (overall, hourly mean per flow)").wait_for()
        shown = metric_values(page, list(expected))
        errors = page.get_by_test_id("stException").all_inner_texts()
        if os.environ.get("SHOPFLOOR_SCREENSHOT") == "1":
            screenshot(page)
        with page.expect_download() as download:  # the button's click reruns the page
            page.get_by_role("button", name="CSV: devices").click()
        exported = pd.read_csv(download.value.path())
        browser.close()
    assert not errors
    assert shown == expected
    assert sorted(zip(exported["loc_id"], exported["device"], strict=True)) == [
        ("L01", "plc-1"), ("L02", "plc-2"), ("L03", "plc-3")]
    assert list(exported["online"]) == [True, False, False]


def screenshot(page) -> None:
    """The whole page (Streamlit scrolls inside its own frame: make the window that tall)."""
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('section, div')]"
        ".map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 100, 6000)})
    page.wait_for_timeout(2000)  # charts redraw at the new size
    out = ROOT / "docs" / "img" / "dashboard.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
