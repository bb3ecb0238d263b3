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
    expected_tag,
    fill_metadata,
    fill_warehouse,
)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is missing (scripts/ensure-system-deps.sh)"),
]
@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness):
    """The page served by `shopfloor dashboard` on known data, once for this module's
    tests; yields (url, warehouse path, metadata path, the time the rows were made for)."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
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
        yield f"http://127.0.0.1:{port}", warehouse, metadata, now
    finally:
        stop(proc, 2, timeout=20)
        log.close()


@pytest.fixture
def dashboard(served):
    """(url, what the page must show), by independent SQL over the served databases."""
    url, warehouse, metadata, now = served
    return url, expected_numbers(warehouse, metadata, now)


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


def test_the_picker_finds_a_pressure_tag_and_the_trend_shows_its_values(served):
    from playwright.sync_api import sync_playwright

    url, warehouse, _, now = served
    expected = expected_tag(warehouse, now)
    tag = "line_pressure (plc-1, bar)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        picker = page.get_by_test_id("stMultiSelect").filter(has_text="Tags (4 found)")
        # The first run is over when its last panel is drawn and Streamlit is idle:
        # typing while it still draws could be lost in the redraw.
        page.get_by_role("button", name="CSV: tag_quality").wait_for(timeout=90_000)
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)
        pick(page, picker, "pressure", tag)  # what a plant engineer types
        page.get_by_test_id("stMetricLabel").get_by_text(f"{tag} not good", exact=True) \
            .wait_for(timeout=120_000)
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)
        shown = metric_values(page, [f"{tag} {k}" for k in ("latest", "min", "max",
                                                            "not good")])
        # the trend's chart (one per unit of the picked tags), drawn
        page.locator(".st-key-tag-trend-bar [data-testid=stVegaLiteChart]") \
            .locator("canvas, svg").first.wait_for()
        errors = page.get_by_test_id("stException").all_inner_texts()
        if os.environ.get("SHOPFLOOR_SCREENSHOT") == "1":
            page.set_viewport_size({"width": 1400, "height": 1500})
            page.get_by_text("Tags", exact=True).evaluate(
                "e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(2000)  # the chart redraws at the new size
            page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard_tags.png"))
        with page.expect_download() as download:
            page.get_by_role("button", name="CSV: tag_trend").click()
        trend = pd.read_csv(download.value.path())
        browser.close()
    assert not errors
    assert shown == {f"{tag} {k}": expected[k] for k in ("latest", "min", "max", "not good")}
    buckets = expected["buckets"]
    assert set(trend["tag"]) == {tag}
    assert list(trend["points"]) == [b[1] for b in buckets]
    assert list(trend["value_min"]) == pytest.approx([b[2] for b in buckets])
    assert list(trend["value_avg"]) == pytest.approx([b[3] for b in buckets])
    assert list(trend["value_max"]) == pytest.approx([b[4] for b in buckets])
    assert list(trend["bad"]) == [b[5] for b in buckets]
    marked = trend.dropna(subset=["reasons"])
    assert sorted(marked["reasons"]) == ["bad 1: out of range [0, 8]"] * 2 + [
        "uncertain 1: stale"]


def pick(page, picker, typed: str, option: str, attempts: int = 3) -> None:
    """Type ``typed`` into a Streamlit multiselect and pick the one option it leaves.
    The list redraws as it filters, so the option is taken by keyboard, not by click; on a
    loaded machine an Enter can land before the list has settled, so it is tried again
    until the option shows as picked."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    box = picker.get_by_role("combobox")
    chip = picker.get_by_test_id("stMultiSelectTagsContainer").get_by_text(option)
    for _ in range(attempts):
        if chip.count():
            break
        box.click()
        box.fill("")
        box.press_sequentially(typed, delay=50)
        page.get_by_role("option").filter(has_text=option).wait_for()
        expect(page.get_by_role("option")).to_have_count(1)
        box.press("Enter")
        try:
            chip.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            continue
    chip.wait_for()  # picked, or the last attempt's error
    box.press("Escape")


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
