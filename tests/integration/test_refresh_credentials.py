"""refresh-credentials against moto's Secrets Manager and a real PostgreSQL.

The test server trusts every connection from 127.0.0.1 (pg_hba ``trust``): a wrong
password connects anyway, so a password change alone proves nothing here. The rotation
therefore switches users, as AWS's alternating-users rotation does: the secret moves from
role A to role B and role A loses LOGIN (standing in for its old password no longer
working). A check that lets bad credentials through, or a block left on role A, fails
these tests; a secret naming a role that does not exist is credentials that really do
not connect. Each role still gets a password, so the tests also hold on a server that
checks them (``SHOPFLOOR_TEST_PG_URL``).
"""

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.settings import PREFECT_API_URL
from prefect.variables import Variable
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from blocks.bootstrap import connector_from_url
from blocks.resolve import connector_url
from flows.master_sync import master_data_sync
from flows.refresh_credentials import refresh_credentials
from shopfloor.aggregation.locations import COLUMNS
from shopfloor.db.engine import check_connection, init_db, make_engine
from shopfloor.db.schema import get_tables
from shopfloor.errors import ShopfloorError
from tasks import runtime
from tasks.variables import CREDENTIAL_SECRETS
from tests.pg import throwaway_database

pytestmark = pytest.mark.usefixtures("prefect_harness")
AWS_BLOCK = "rotation-test-aws"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Plant:
    """A database of its own, two login roles with grants on its tables, a secret (one
    per module: each test saves its own block and puts the secret value it needs)."""

    url: str  # the database as the postgres superuser
    roles: dict[str, str]  # role -> password
    secret: str
    secrets_manager: object

    def role_url(self, role: str, password: str | None = None) -> str:
        u = make_url(self.url).set(username=role, password=password or self.roles[role])
        return u.render_as_string(hide_password=False)

    def put_secret(self, role: str, password: str) -> None:
        u = make_url(self.url)
        self.secrets_manager.put_secret_value(SecretId=self.secret, SecretString=json.dumps({
            "engine": "postgres", "host": u.host, "port": u.port or 5432,
            "username": role, "password": password, "dbname": u.database,
            "dbInstanceIdentifier": "shopfloor-test"}))


@pytest.fixture(scope="module")
def plant(prefect_harness, pg_server_url, s3_endpoint) -> Iterator[Plant]:
    tag = uuid.uuid4().hex[:8]
    roles = {f"sf_rot_a_{tag}": f"pw-a-{tag}", f"sf_rot_b_{tag}": f"pw-b-{tag}"}
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with throwaway_database(pg_server_url, "shopfloor_rot") as url:
        yield from _plant(admin, url, tag, roles, s3_endpoint)
    with admin.connect() as conn:
        for role in roles:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
    admin.dispose()


def _plant(admin: Engine, url: str, tag: str, roles: dict[str, str],
           s3_endpoint: str) -> Iterator[Plant]:
    with admin.connect() as conn:
        for role, password in roles.items():
            # Test-made names and values: no bound parameters in CREATE ROLE.
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
    engine = make_engine(url)
    init_db(engine)
    with engine.begin() as conn:
        for role in roles:
            conn.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
            conn.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"))
        conn.execute(insert(get_tables(None).location), [
            {**dict.fromkeys(COLUMNS), "loc_id": "L1", "name": "oven", "active": True}])
    engine.dispose()
    AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                   region_name="us-east-1",
                   aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint),
                   ).save(AWS_BLOCK, overwrite=True)
    sm = boto3.client("secretsmanager", endpoint_url=s3_endpoint, region_name="us-east-1")
    secret = f"shopfloor/test/{tag}"
    sm.create_secret(Name=secret, SecretString="{}")
    yield Plant(url, roles, secret, sm)
    sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)


def block_url(name: str) -> str:
    return connector_url(SqlAlchemyConnector.load(name))


def artifact_rows(state) -> tuple[list[dict], str]:
    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["refresh-credentials"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    raw = art.data if isinstance(art.data, str) else json.dumps(art.data)
    return json.loads(raw), raw + (art.description or "")


def logged(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def test_rotation_to_a_new_user_updates_the_block_and_the_next_flow_connects(plant, caplog):
    caplog.set_level(logging.INFO)
    old, new = plant.roles
    block = f"rot-{uuid.uuid4().hex[:8]}"
    connector_from_url(plant.role_url(old)).save(block)
    plant.put_secret(old, plant.roles[old])

    same = refresh_credentials(block_secrets={block: plant.secret},
                               aws_credentials=AWS_BLOCK, return_state=True)
    assert same.is_completed() and same.name == "Idle"  # nothing to rotate yet
    assert artifact_rows(same)[0][0]["result"] == "unchanged"

    # The rotation: B gets the secret, A stops working.
    plant.put_secret(new, plant.roles[new])
    with create_engine(plant.url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f"ALTER ROLE {old} NOLOGIN"))
    with pytest.raises(ShopfloorError, match="not permitted to log in"):
        check_connection(make_engine(block_url(block)), block)

    state = refresh_credentials(block_secrets={block: plant.secret},
                                aws_credentials=AWS_BLOCK, return_state=True)
    assert state.is_completed() and state.name == "Completed"
    rows, artifact = artifact_rows(state)
    assert [(r["block"], r["secret"], r["result"]) for r in rows] == [
        (block, plant.secret, "updated")]
    info = SqlAlchemyConnector.load(block).connection_info
    assert (info.username, info.password.get_secret_value()) == (new, plant.roles[new])
    assert info.database == make_url(plant.url).database

    # The next flow that uses the block connects as B.
    synced = master_data_sync(source_db=block, target_db=block, return_state=True)
    assert synced.is_completed(), synced.message
    with runtime.engine(block).connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == new

    again = refresh_credentials(block_secrets={block: plant.secret},
                                aws_credentials=AWS_BLOCK, return_state=True)
    assert again.name == "Idle" and artifact_rows(again)[0][0]["result"] == "unchanged"
    for password in plant.roles.values():
        assert password not in artifact
        assert password not in logged(caplog)


def test_credentials_that_do_not_connect_fail_the_run_and_keep_the_block(plant, caplog):
    caplog.set_level(logging.INFO)
    old, _ = plant.roles
    block = f"rot-{uuid.uuid4().hex[:8]}"
    connector_from_url(plant.role_url(old)).save(block)
    before = block_url(block)
    planted = f"never-shown-{uuid.uuid4().hex}"
    plant.put_secret(f"sf_rot_missing_{uuid.uuid4().hex[:8]}", planted)  # no such role
    # The mapping from the Prefect Variable, as the weekly deployment (no parameters) runs.
    Variable.set(CREDENTIAL_SECRETS, {block: plant.secret}, overwrite=True)
    try:
        state = refresh_credentials(aws_credentials=AWS_BLOCK, return_state=True)
    finally:
        Variable.unset(CREDENTIAL_SECRETS)

    assert state.is_failed()
    assert f"{block}: cannot connect to database" in state.message
    assert block_url(block) == before
    rows, artifact = artifact_rows(state)
    assert [(r["block"], r["result"]) for r in rows] == [(block, "failed")]
    assert "does not exist" in rows[0]["detail"]
    assert planted not in artifact
    assert planted not in logged(caplog)
    assert planted not in state.message


def test_a_missing_secret_fails_that_block_only(plant):
    old, _ = plant.roles
    good, bad = (f"rot-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for name in (good, bad):
        connector_from_url(plant.role_url(old)).save(name)
    plant.put_secret(old, plant.roles[old])
    state = refresh_credentials(
        block_secrets={good: plant.secret, bad: "shopfloor/test/no-such-secret"},
        aws_credentials=AWS_BLOCK, return_state=True)
    assert state.is_failed()
    rows, _ = artifact_rows(state)
    assert {r["block"]: r["result"] for r in rows} == {good: "unchanged", bad: "failed"}
    assert "ResourceNotFoundException" in state.message


def test_the_cli_refreshes_from_block_secret_pairs_and_prints_no_password(plant):
    old, _ = plant.roles
    block = f"rot-{uuid.uuid4().hex[:8]}"
    connector_from_url(plant.role_url(old)).save(block)
    plant.put_secret(old, plant.roles[old])
    main = "import sys; from deployments.cli import main; sys.argv[0] = 'shopfloor'; main()"
    res = subprocess.run(
        [sys.executable, "-c", main, "credentials", "refresh", "--secret",
         f"{block}={plant.secret}", "--aws-credentials", AWS_BLOCK],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()})
    assert res.returncode == 0, res.stderr
    assert f"{block:<24} unchanged  {plant.secret}" in res.stdout
    assert "Idle: every block already holds its secret's credentials" in res.stdout
    assert plant.roles[old] not in res.stdout + res.stderr


def test_the_check_connects_with_the_blocks_connect_args_and_the_block_keeps_them(plant):
    old, new = plant.roles
    block = f"rot-{uuid.uuid4().hex[:8]}"
    plant.put_secret(new, plant.roles[new])
    # Driver arguments the server refuses: the new credentials are checked with them, as
    # the flows would connect, so the block is not switched to a login that fails there.
    SqlAlchemyConnector(connection_info=plant.role_url(old),
                        connect_args={"options": "-c work_mem=not-a-size"}).save(block)
    before = block_url(block)
    state = refresh_credentials(block_secrets={block: plant.secret},
                                aws_credentials=AWS_BLOCK, return_state=True)
    assert state.is_failed()
    rows, _ = artifact_rows(state)
    assert rows[0]["result"] == "failed" and "work_mem" in rows[0]["detail"]
    assert block_url(block) == before

    SqlAlchemyConnector(connection_info=plant.role_url(old),
                        connect_args={"application_name": "sf-rotated"}).save(block,
                                                                             overwrite=True)
    state = refresh_credentials(block_secrets={block: plant.secret},
                                aws_credentials=AWS_BLOCK, return_state=True)
    assert state.is_completed(), state.message
    assert SqlAlchemyConnector.load(block).connect_args == {"application_name": "sf-rotated"}
    with runtime.engine(block).connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == new
        assert conn.execute(text("SELECT current_setting('application_name')")).scalar() \
            == "sf-rotated"
