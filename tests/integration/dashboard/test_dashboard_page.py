"""The Streamlit page run in process (Streamlit's AppTest) against databases behind real
blocks: its numbers, its widgets, and what it says when there is nothing to show."""

import sys
import uuid
from datetime import UTC, datetime

from streamlit.testing.v1 import AppTest

from blocks.bootstrap import connector_from_url
from deployments.dashboard import APP
from shopfloor.db.engine import init_db, make_engine
from tests.integration.dashboard.known_rows import (
    expected_numbers,
    expected_tag,
    fill_metadata,
    fill_warehouse,
)


def block(url: str) -> str:
    name = f"dash-page-{uuid.uuid4().hex[:8]}"
    connector_from_url(url).save(name, overwrite=True)
    return name


def run_page(monkeypatch, *args: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", [str(APP), *args])
    at = AppTest.from_file(str(APP), default_timeout=120)
    return at.run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_numbers_equal_the_databases_and_follow_the_widgets(prefect_harness, tmp_path,
                                                                   monkeypatch):
    now = datetime.now(UTC)
    warehouse, metadata = tmp_path / "wh.db", tmp_path / "md.db"
    fill_warehouse(f"sqlite+pysqlite:///{warehouse}", now)
    fill_metadata(f"sqlite+pysqlite:///{metadata}", now)
    at = run_page(monkeypatch, "--warehouse-db", block(f"sqlite+pysqlite:///{warehouse}"),
                  "--metadata-db", block(f"sqlite+pysqlite:///{metadata}"))
    assert not at.exception, at.exception
    shown = metrics(at)
    expected = expected_numbers(warehouse, metadata, now)
    assert {k: shown.get(k) for k in expected} == expected
    assert shown["Devices known"] == "3"
    assert shown["Quarantined modbus-capture"] == "3"
    assert shown["Quarantined s3-compaction"] == "2"

    at.sidebar.multiselect[0].set_value(["L02"]).run()
    assert [m.label for m in at.metric if m.label.startswith("Daily max")] == [
        k for k in expected if k.startswith("Daily max")]
    at.sidebar.number_input[0].set_value(60).run()  # L02 heard from 40 min ago is online
    assert metrics(at)["Devices online"] == "2"
    at.sidebar.selectbox[0].set_value("humidity").run()
    assert all(v == "50.00" for k, v in metrics(at).items() if k.startswith("Daily max"))


def test_the_tag_picker_trends_a_pressure_and_shows_a_recipes_changes(prefect_harness,
                                                                       tmp_path, monkeypatch):
    now = datetime.now(UTC)
    warehouse = tmp_path / "wh.db"
    url = f"sqlite+pysqlite:///{warehouse}"
    fill_warehouse(url, now)
    name = block(url)
    at = run_page(monkeypatch, "--warehouse-db", name, "--metadata-db", name)
    assert not at.exception, at.exception
    location = next(s for s in at.selectbox if s.label == "Tag location")
    assert location.options == ["L01", "L02"] and location.value == "L01"
    picker = next(m for m in at.multiselect if m.label.startswith("Tags ("))
    assert picker.label == "Tags (4 found)"
    next(m for m in at.multiselect if m.label == "Tag units").set_value(["bar", "(none)"]).run()
    picker = next(m for m in at.multiselect if m.label.startswith("Tags ("))
    assert picker.options == ["line_pressure (plc-1, bar)", "recipe (plc-1)"]
    picker.set_value([2, 4]).run()
    assert not at.exception, at.exception
    expected = expected_tag(warehouse, now)
    shown = metrics(at)
    assert {k: shown[f"line_pressure (plc-1, bar) {k}"]
            for k in ("latest", "min", "max", "not good")} == {
        k: v for k, v in expected.items() if k != "buckets"}
    assert shown["recipe (plc-1) latest"] == "R-300"
    trend, changes, quality = (d.value for d in at.dataframe[-3:])
    assert list(trend["points"]) == [b[1] for b in expected["buckets"]]
    assert list(trend["value_max"]) == [b[4] for b in expected["buckets"]]
    assert sorted(r for r in trend["reasons"] if r) == [
        "bad 1: out of range [0, 8]", "bad 1: out of range [0, 8]", "uncertain 1: stale"]
    assert list(changes["text_value"]) == ["R-300", "R-200", "R-100"]
    assert list(quality["name"]) == ["line_pressure", "motor_current", "recipe", "temperature"]
    assert list(quality["points"]) == [72, 0, 72, 72]
    assert list(quality["bad"]) == [2, 0, 0, 0] and list(quality["uncertain"]) == [1, 0, 0, 0]


def test_an_empty_warehouse_says_no_data_yet(prefect_harness, tmp_path, monkeypatch):
    url = f"sqlite+pysqlite:///{tmp_path / 'empty.db'}"
    engine = make_engine(url)
    init_db(engine)
    engine.dispose()
    at = run_page(monkeypatch, "--warehouse-db", block(url), "--metadata-db", block(url),
                  "--timezone", "Asia/Makassar")
    assert not at.exception, at.exception
    assert metrics(at) == {"Devices online": "0", "Devices known": "0",
                           "Newest reading age": "never", "Quarantined": "0",
                           "Compaction backlog": "0", "Forward backlog": "0"}
    infos = [i.value for i in at.info]
    assert infos.count("no data yet") == 7 and any("no backlog" in i for i in infos)
    assert any(i.startswith("no report yet") for i in infos)  # no collector reported
    assert any(i.startswith("no tags yet") for i in infos)


def test_an_unknown_block_is_shown_as_one_error(prefect_harness, monkeypatch):
    at = run_page(monkeypatch, "--warehouse-db", "no-such-block")
    assert len(at.error) == 1
    assert "block 'no-such-block' not found" in at.error[0].value
    assert not at.metric  # the page stopped there
