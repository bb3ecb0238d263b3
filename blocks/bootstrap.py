"""Create or update the default blocks of DESIGN.md from environment variables.

The variables (all optional; the README lists them too):

- ``SHOPFLOOR_HOME``: folder for the embedded SQLite file and local folders
  (default ``./.shopfloor``).
- ``SHOPFLOOR_DB_URL``: every database block not set below (default: embedded SQLite).
- ``SHOPFLOOR_SOURCE_DB_URL``, ``SHOPFLOOR_WAREHOUSE_DB_URL``, ``SHOPFLOOR_METADATA_DB_URL``,
  ``SHOPFLOOR_HISTORIAN_DB_URL``: one database block each.
- ``SHOPFLOOR_S3_BUCKET``: one bucket for raw logs (prefix ``raw``) and the lake
  (prefix ``lake``); unset means local folders under ``SHOPFLOOR_HOME``.
- ``SHOPFLOOR_RAW_LOGS_BUCKET``, ``SHOPFLOOR_LAKE_BUCKET``: a bucket each (no prefix).
- ``SHOPFLOOR_RAW_LOGS_PREFIX``, ``SHOPFLOOR_LAKE_PREFIX``: folders inside the bucket.
- ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
  ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``SHOPFLOOR_S3_ENDPOINT_URL`` (MinIO, moto):
  the ``shopfloor-aws`` credentials block.
- ``SHOPFLOOR_NOTIFY_WEBHOOK_URL``: the ``shopfloor-notify-webhook`` block (a JSON POST of
  ``subject``, ``body`` and ``name``), the target of the automations in operations.yaml.
- ``SHOPFLOOR_NOTIFY_SLACK_URL``: the ``shopfloor-notify-slack`` block (a Slack webhook).
- ``SHOPFLOOR_NOTIFY_SENDGRID_API_KEY``, ``SHOPFLOOR_NOTIFY_EMAIL_TO`` (comma-separated) and
  ``SHOPFLOOR_NOTIFY_EMAIL_FROM``: the ``shopfloor-notify-email`` block (SendGrid e-mail).
  Unset variables leave an existing notification block as it is.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from prefect.blocks.core import Block
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    SendgridEmail,
    SlackWebhook,
)
from prefect.client.orchestration import get_client
from prefect.filesystems import LocalFileSystem
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector

from blocks.documents import documents_named
from blocks.saving import save_block
from shopfloor.db.urls import display_url, parse_database_url
from shopfloor.settings import default_sqlite_url

DB_BLOCKS = {
    "shopfloor-source-db": "SHOPFLOOR_SOURCE_DB_URL",
    "shopfloor-warehouse-db": "SHOPFLOOR_WAREHOUSE_DB_URL",
    "shopfloor-metadata-db": "SHOPFLOOR_METADATA_DB_URL",
    "shopfloor-historian-db": "SHOPFLOOR_HISTORIAN_DB_URL",
}
AWS_BLOCK = "shopfloor-aws"
STORAGE_BLOCKS = {"shopfloor-raw-logs": "RAW_LOGS", "shopfloor-lake": "LAKE"}
NOTIFY_WEBHOOK, NOTIFY_SLACK, NOTIFY_EMAIL = (
    "shopfloor-notify-webhook", "shopfloor-notify-slack", "shopfloor-notify-email")


@dataclass(frozen=True)
class BootstrapResult:
    """What bootstrap did to one block; ``summary`` never holds a secret."""

    name: str
    block_type: str
    summary: str


def connector_from_url(url: str) -> SqlAlchemyConnector:
    """A ``SqlAlchemyConnector`` whose password is a secret field, not part of a URL string
    (nor of its query: a ``?password=`` is moved into the secret field)."""
    u = parse_database_url(url)
    return SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=u.drivername,
            username=u.username,
            password=u.password,
            host=u.host,
            port=u.port,
            database=u.database,
            query=dict(u.query) or None,
        )
    )


def _save(block: Block, name: str) -> None:
    """Save ``block`` as ``name`` and remove same-named blocks of other types, so that
    switching storage from a local folder to S3 (or back) leaves exactly one candidate."""
    save_block(block, name)
    slug = block.get_block_type_slug()
    with get_client(sync_client=True) as client:
        for doc in documents_named(name, client):
            if doc.block_type and doc.block_type.slug != slug:
                client.delete_block_document(doc.id)


def _aws_credentials(env: Mapping[str, str]) -> AwsCredentials:
    endpoint = env.get("SHOPFLOOR_S3_ENDPOINT_URL") or None
    return AwsCredentials(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )


def _storage_block(name: str, var: str, env: Mapping[str, str], home: Path,
                   creds: AwsCredentials | None) -> tuple[Block, str, str]:
    shared = env.get("SHOPFLOOR_S3_BUCKET") or ""
    bucket = env.get(f"SHOPFLOOR_{var}_BUCKET") or shared
    if not bucket:
        path = home / name.removeprefix("shopfloor-")
        path.mkdir(parents=True, exist_ok=True)
        return LocalFileSystem(basepath=str(path)), "LocalFileSystem", f"folder {path}"
    default_prefix = ("raw" if var == "RAW_LOGS" else "lake") if not env.get(
        f"SHOPFLOOR_{var}_BUCKET") else ""
    prefix = env.get(f"SHOPFLOOR_{var}_PREFIX", default_prefix)
    block = S3Bucket(bucket_name=bucket, bucket_folder=prefix, credentials=creds)
    return block, "S3Bucket", f"s3://{bucket}/{prefix}".rstrip("/")


def _shown_url(url: str) -> str:
    """Scheme and host only: a webhook's path and query often carry its token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}/..."


def notification_blocks(env: Mapping[str, str]) -> list[tuple[str, Block, str, str]]:
    """(name, block, type, summary) of each notification target the environment configures."""
    found: list[tuple[str, Block, str, str]] = []
    if url := env.get("SHOPFLOOR_NOTIFY_WEBHOOK_URL"):
        block = CustomWebhookNotificationBlock(
            name="shopfloor", url=url, method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}", "name": "{{name}}"})
        found.append((NOTIFY_WEBHOOK, block, "CustomWebhookNotificationBlock", _shown_url(url)))
    if url := env.get("SHOPFLOOR_NOTIFY_SLACK_URL"):
        found.append((NOTIFY_SLACK, SlackWebhook(url=url), "SlackWebhook", _shown_url(url)))
    key, to = env.get("SHOPFLOOR_NOTIFY_SENDGRID_API_KEY"), env.get("SHOPFLOOR_NOTIFY_EMAIL_TO")
    if key and to:
        emails = [e.strip() for e in to.split(",") if e.strip()]
        sender = env.get("SHOPFLOOR_NOTIFY_EMAIL_FROM") or "shopfloor@localhost"
        found.append((NOTIFY_EMAIL, SendgridEmail(api_key=key, sender_email=sender,
                                                  to_emails=emails),
                      "SendgridEmail", f"{len(emails)} recipient(s), key set"))
    return found


def bootstrap_blocks(env: Mapping[str, str], home: Path) -> list[BootstrapResult]:
    """Create or update every default block from ``env``; safe to repeat."""
    results: list[BootstrapResult] = []
    fallback = env.get("SHOPFLOOR_DB_URL") or default_sqlite_url()
    # Every URL is parsed and its driver loaded before anything is saved: one bad URL
    # must not leave some blocks overwritten and others not.
    connectors = {name: connector_from_url(env.get(var) or fallback)
                  for name, var in DB_BLOCKS.items()}
    for name, var in DB_BLOCKS.items():
        _save(connectors[name], name)
        shown = display_url(parse_database_url(env.get(var) or fallback))
        results.append(BootstrapResult(name, "SqlAlchemyConnector", shown))
    creds = _aws_credentials(env)
    _save(creds, AWS_BLOCK)
    endpoint = env.get("SHOPFLOOR_S3_ENDPOINT_URL") or "AWS"
    has_key = "key set" if env.get("AWS_ACCESS_KEY_ID") else "default credential chain"
    results.append(BootstrapResult(AWS_BLOCK, "AwsCredentials", f"{endpoint}, {has_key}"))
    for name, var in STORAGE_BLOCKS.items():
        block, type_name, summary = _storage_block(name, var, env, home, creds)
        _save(block, name)
        results.append(BootstrapResult(name, type_name, summary))
    for name, block, type_name, summary in notification_blocks(env):
        _save(block, name)
        results.append(BootstrapResult(name, type_name, summary))
    return results
