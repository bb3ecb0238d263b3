"""Database blocks whose credentials come from AWS Secrets Manager.

:func:`refresh_connector` is one (block <- secret) step of the ``refresh-credentials``
flow: read the secret through prefect-aws's ``AwsSecret`` (with the ``AwsCredentials``
block, so an endpoint URL for moto or a VPC endpoint applies), merge it into the
``SqlAlchemyConnector`` block's connection, check that the new credentials connect, and
only then save the block under the same name. A failed check leaves the block as it was.
"""

from botocore.exceptions import BotoCoreError, ClientError
from prefect_aws import AwsCredentials
from prefect_aws.secrets_manager import AwsSecret
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.engine import URL, make_url

from blocks.resolve import connector_connect_args, connector_url, load_block
from shopfloor.db.credentials import (
    CREATED,
    FAILED,
    UNCHANGED,
    UPDATED,
    RefreshResult,
    check_credentials,
    parse_database_secret,
    rotated_url,
)
from shopfloor.db.urls import display_url
from shopfloor.errors import ShopfloorError, first_line

__all__ = ["CREATED", "FAILED", "UNCHANGED", "UPDATED", "RefreshResult", "refresh_connector"]


def read_secret_value(secret_id: str, aws_credentials: str) -> str | bytes:
    """The current value of secret ``secret_id`` (a name or an ARN).

    Raises:
        ShopfloorError: unknown credentials block, missing secret, access denied,
            unreachable endpoint (AWS's error code or reason, never the value).
    """
    creds = load_block(aws_credentials, AwsCredentials)
    try:
        return AwsSecret(aws_credentials=creds, secret_name=secret_id).read_secret()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise ShopfloorError(f"cannot read secret {secret_id!r}: {code}") from None
    except BotoCoreError as exc:
        raise ShopfloorError(f"cannot read secret {secret_id!r}: {first_line(exc)}") from None


def _load_connector(name: str) -> SqlAlchemyConnector | None:
    try:
        return load_block(name, SqlAlchemyConnector)
    except ShopfloorError:  # not found: the secret may create it
        return None


def save_connector(name: str, url: URL, existing: SqlAlchemyConnector | None) -> None:
    """Save ``url`` into block ``name`` (password in the secret field), keeping the
    existing block's other settings (connect_args, fetch_size)."""
    info = ConnectionComponents(
        driver=url.drivername, username=url.username, password=url.password, host=url.host,
        port=url.port, database=url.database, query=dict(url.query) or None)
    block = (existing.model_copy(update={"connection_info": info}) if existing
             else SqlAlchemyConnector(connection_info=info))
    block.save(name, overwrite=True)


def refresh_connector(block: str, secret_id: str, aws_credentials: str) -> RefreshResult:
    """Bring block ``block`` to the credentials in secret ``secret_id``, if they connect.

    Returns ``unchanged`` when the block already holds them (nothing saved, nothing
    opened), ``updated``/``created`` after a successful ``SELECT 1`` with the new
    credentials, ``failed`` with the reason otherwise (the block left as it was).
    """
    password = None
    try:
        secret = parse_database_secret(read_secret_value(secret_id, aws_credentials),
                                       secret_id)
        password = secret.password
        existing = _load_connector(block)
        current = make_url(connector_url(existing)) if existing else None
        new = rotated_url(current, secret, secret_id)
        if new == current:
            return RefreshResult(block, secret_id, UNCHANGED, display_url(new))
        check_credentials(new, block,
                          connect_args=connector_connect_args(existing) if existing else None)
        save_connector(block, new, existing)
        return RefreshResult(block, secret_id, UPDATED if existing else CREATED,
                             display_url(new))
    except ShopfloorError as exc:
        reason = first_line(exc)
        if password:  # belt and braces: a driver may quote what it was given
            reason = reason.replace(password, "***")
        return RefreshResult(block, secret_id, FAILED, reason)
