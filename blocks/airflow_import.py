"""Blocks from Airflow connections (``shopfloor blocks import-airflow``).

Reading and mapping are :mod:`shopfloor.airflow`; this module turns a plan into a block
and saves it (overwriting a block of the same name, as ``shopfloor blocks bootstrap``
does, so a rerun changes nothing).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.engine import URL
from sqlalchemy.exc import NoSuchModuleError

from blocks.bootstrap import _save
from shopfloor.airflow.connections import (
    AirflowConnection,
    Unreadable,
    connections_from_env,
    connections_from_file,
)
from shopfloor.airflow.targets import (
    AwsTarget,
    BlockPlan,
    DatabaseTarget,
    Refusal,
    plan_blocks,
)
from shopfloor.errors import ShopfloorError, UserError


def read_connections(path: Path | None, env: Mapping[str, str] | None
                     ) -> list[AirflowConnection | Unreadable]:
    """The connections of an export file and/or the environment; an id in both is taken
    from the environment, which Airflow also looks up first."""
    found: dict[str, AirflowConnection | Unreadable] = {}
    if path is not None:
        found.update((c.conn_id, c) for c in connections_from_file(path))
    if env is not None:
        found.update((c.conn_id, c) for c in connections_from_env(env))
    return list(found.values())


def connector(target: DatabaseTarget) -> SqlAlchemyConnector:
    """A ``SqlAlchemyConnector`` whose password is its secret field."""
    try:  # the driver must load here, not when a flow first connects
        URL.create(target.driver).get_dialect()
    except NoSuchModuleError:
        raise UserError(f"driver {target.driver} is not installed") from None
    return SqlAlchemyConnector(connection_info=ConnectionComponents(
        driver=target.driver, host=target.host, port=target.port, database=target.database,
        username=target.username, password=target.password, query=dict(target.query) or None))


def aws_credentials(target: AwsTarget) -> AwsCredentials:
    """An ``AwsCredentials`` block with the keys as secret fields."""
    params = AwsClientParameters(endpoint_url=target.endpoint_url,
                                 **({"verify": target.verify} if target.verify is not None
                                    else {}))
    return AwsCredentials(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        aws_session_token=target.session_token,
        region_name=target.region,
        profile_name=target.profile_name,
        assume_role_arn=target.role_arn,
        assume_role_kwargs=dict(target.assume_role_kwargs),
        aws_client_parameters=params,
    )


def build_block(plan: BlockPlan) -> Block:
    """The block ``plan`` describes."""
    if isinstance(plan.target, DatabaseTarget):
        return connector(plan.target)
    return aws_credentials(plan.target)


def import_connections(connections: Sequence[AirflowConnection | Unreadable],
                       names: Mapping[str, str], only: Sequence[str] = (),
                       dry_run: bool = False) -> list[BlockPlan | Refusal]:
    """Save a block per connection that maps to one; return what was saved or refused.

    Every block is built (drivers loaded, fields checked) before any is saved, so a
    connection that cannot be built is refused without leaving others half-imported.
    """
    outcome: list[BlockPlan | Refusal] = []
    built: list[tuple[BlockPlan, Block]] = []
    for plan in plan_blocks(connections, names, only):
        if isinstance(plan, Refusal):
            outcome.append(plan)
            continue
        try:
            built.append((plan, build_block(plan)))
            outcome.append(plan)
        except (ShopfloorError, ValueError) as exc:
            # pydantic's errors name the field, never its value for secret fields.
            reason = str(exc).splitlines()[0] if isinstance(exc, ShopfloorError) else (
                "a field is invalid for " + plan.block_type)
            outcome.append(Refusal(plan.conn_id, reason))
    if not dry_run:
        for plan, block in built:
            _save(block, plan.block_name)
    return outcome
