"""`shopfloor dashboard` refuses what would only fail later in the page, before serving."""

import pytest
from typer.testing import CliRunner

from blocks.bootstrap import connector_from_url
from deployments.cli import app
from deployments.dashboard import APP, streamlit_command
from shopfloor.errors import ShopfloorError


def test_unknown_block_bad_zone_and_dead_database_fail_before_anything_is_served(
        prefect_harness, monkeypatch, sqlite_url):
    import deployments.dashboard as dash

    monkeypatch.setattr(dash.subprocess, "Popen", lambda *a, **k: pytest.fail("served"))
    connector_from_url("postgresql+psycopg2://u:pw-secret@127.0.0.1:1/x").save(
        "dash-dead-db", overwrite=True)
    connector_from_url(sqlite_url).save("dash-live-db", overwrite=True)
    cases = [
        (("--warehouse-db", "no-such-db"), "block 'no-such-db' not found"),
        (("--timezone", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (("--warehouse-db", "dash-live-db", "--metadata-db", "dash-dead-db"),
         "cannot connect to database 'dash-dead-db'"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(app, ["dashboard", *args])
        assert isinstance(res.exception, ShopfloorError), res.output
        assert message in str(res.exception) and "pw-secret" not in str(res.exception)


def test_streamlit_command_serves_the_page_with_the_blocks_after_the_separator():
    cmd = streamlit_command(8600, "0.0.0.0", "wh", "meta", "Asia/Makassar")
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP)] and APP.exists()
    sep = cmd.index("--")
    assert cmd[sep + 1:] == ["--warehouse-db", "wh", "--metadata-db", "meta",
                             "--timezone", "Asia/Makassar"]
    flags = dict(zip(cmd[5:sep:2], cmd[6:sep:2], strict=True))
    assert flags["--server.port"] == "8600" and flags["--server.address"] == "0.0.0.0"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
