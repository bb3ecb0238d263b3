"""`shopfloor dashboard` in a real browser: headless Chromium (Debian's) driven by Playwright.

The test fills a warehouse and a metadata database (SQLite files behind real Prefect
blocks) with known rows, serves the page with the CLI, and checks that the numbers the
page shows equal what independent SQL over the same databases says. With
``SHOPFLOOR_SCREENSHOT=1`` it also saves ``docs/img/dashboard.png`` for the README.
"""

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL

from blocks.bootstrap import connector_from_url
from tests.conftest import free_port
from tests.e2e.servers import ROOT, clean_env, stop
from tests.integration.dashboard.known_rows import (
    expected_numbers,
    fill_metadata,
    fill_warehouse,
)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is missing (scripts/ensure-system-deps.sh)"),
]
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
        last = page.get_by_test_id("stMetricLabel").get_by_text(
            "Forward backlog line-2 warehouse:wh", exact=True)
        last.wait_for(timeout=90_000)
        page.get_by_text("Quality score (overall, hourly mean per flow)").wait_for()
        page.get_by_text("Store and forward: backlog per collector and sink").wait_for()
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
    assert shown["Forward backlog line-1 landing:s3"] == "37"  # the landing behind, seen
    assert sorted(zip(exported["loc_id"], exported["device"], strict=True)) == [
        ("L01", "plc-1"), ("L02", "plc-2"), ("L03", "plc-3")]
    assert list(exported["online"]) == [True, False, False]


def screenshot(page) -> None:
    """The whole page (Streamlit scrolls inside its own frame: make the window that tall,
    twice, as the page lays out again at a new size)."""
    for _ in range(2):
        height = page.evaluate(
            "Math.max(...[...document.querySelectorAll('section, div')]"
            ".map(e => e.scrollHeight))")
        page.set_viewport_size({"width": 1400, "height": min(int(height) + 100, 8000)})
        page.wait_for_timeout(2000)  # charts redraw at the new size
    page.get_by_text("Compaction backlog per district").scroll_into_view_if_needed()
    out = ROOT / "docs" / "img" / "dashboard.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
