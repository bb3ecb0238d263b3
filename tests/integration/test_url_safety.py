"""Database URLs are checked before anything is saved, and a password never shows:
not in the query string of a block, not in CLI output, not in a flow's logs or events."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect_sqlalchemy import SqlAlchemyConnector

from blocks.bootstrap import DB_BLOCKS, bootstrap_blocks
from shopfloor.errors import ShopfloorError
from tasks import runtime

SHOPFLOOR = str(Path(sys.executable).with_name("shopfloor"))
PLANTED = "planted-pw-7f3a9"


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOOR_")}
    full_env.update({"SHOPFLOOR_HOME": str(tmp_path / "home"),
                     "PREFECT_HOME": str(tmp_path / "prefect"), **env})
    full_env.pop("PREFECT_API_URL", None)
    return subprocess.run([SHOPFLOOR, *args], capture_output=True, text=True, env=full_env,
                          timeout=180)


def _error_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql+psycopg2://u:pw@db.local:abc/plant",
     "error: invalid database URL: the port must be a number"),
    ("postgresql+nosuchdriver://u:pw@db.local/plant",
     "error: unknown database driver 'postgresql+nosuchdriver'"),
    (f"postgresql+psycopg2://u@db.local/plant?sslpassword={PLANTED}",
     "error: database URL carries a secret in its query string (sslpassword)"),
])  # every message: tests/unit/test_db_urls.py
def test_a_bad_url_is_one_error_line(tmp_path, url, message):
    res = run(["db", "init", "--url", url], tmp_path)
    assert res.returncode == 2
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == _error_lines(res)
    assert _error_lines(res)[0].startswith(message), res.stderr
    assert "Traceback" not in res.stderr and PLANTED not in res.stderr + res.stdout


def test_a_password_in_the_query_string_is_never_shown(tmp_path):
    url = f"postgresql+psycopg2://u@127.0.0.1:1/plant?password={PLANTED}&connect_timeout=2"
    res = run(["db", "init", "--url", url], tmp_path)
    assert res.returncode == 1
    assert _error_lines(res)[0].startswith("error: cannot connect to database '--url' "
                                           "(postgresql+psycopg2://u:***@127.0.0.1:1/plant"
                                           "?connect_timeout=***)")
    assert PLANTED not in res.stderr + res.stdout


@pytest.mark.usefixtures("prefect_harness")
def test_bootstrap_with_a_bad_url_overwrites_nothing(tmp_path):
    from blocks.resolve import connector_url, load_block

    def urls() -> dict[str, str]:
        return {name: connector_url(load_block(name, SqlAlchemyConnector)) for name in DB_BLOCKS}

    bootstrap_blocks({}, tmp_path)
    before = urls()
    assert all(u.startswith("sqlite") for u in before.values())
    bad = {"SHOPFLOOR_SOURCE_DB_URL": "postgresql+psycopg2://u@h/db",  # valid, listed first
           "SHOPFLOOR_WAREHOUSE_DB_URL": "postgresql+nosuchdriver://u@h/db"}
    with pytest.raises(ShopfloorError, match="unknown database driver") as info:
        bootstrap_blocks(bad, tmp_path)
    assert "\n" not in str(info.value)
    assert urls() == before  # not even the valid source URL was saved


@pytest.mark.usefixtures("prefect_harness")
def test_query_password_goes_to_the_secret_field_and_stays_out_of_logs_and_events(
        tmp_path, pg_url):
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.master_sync import master_data_sync
    from shopfloor.db.engine import init_db

    url = pg_url.replace("postgres@", "postgres@", 1) + f"?password={PLANTED}"
    bootstrap_blocks({"SHOPFLOOR_DB_URL": url}, tmp_path)
    engine = runtime.engine("shopfloor-warehouse-db")  # trust auth: the password is not needed
    assert engine.url.password == PLANTED and "password" not in engine.url.query
    init_db(engine)
    state = master_data_sync(return_state=True)
    run_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(
            "shopfloor-warehouse-db", "sqlalchemy-connector", include_secrets=False)
        logs, events = [], []
        deadline = time.monotonic() + 120  # logs and events reach the API asynchronously
        while time.monotonic() < deadline and not (
                logs and any(run_id in json.dumps(e) for e in events)):
            time.sleep(1)
            logs = client.read_logs(LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            events = client.request("POST", "/events/filter", json={
                "filter": {"any_resource": {"id": [f"prefect.flow-run.{run_id}"]}},
                "limit": 50}).json()["events"]
    assert any(run_id in json.dumps(e) for e in events), "no event of the run to search"
    assert PLANTED not in json.dumps(doc.data, default=str)
    assert doc.data["connection_info"].get("query") in (None, {})
    assert logs and PLANTED not in " ".join(log.message for log in logs)
    assert PLANTED not in json.dumps(events)
    assert PLANTED not in str(state)
    assert Block.load("sqlalchemy-connector/shopfloor-warehouse-db")  # still loads
