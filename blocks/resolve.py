"""Turn a block name into what tasks need: a connector's URL, a storage location, a device.

Engines are made from connectors in one place, :func:`tasks.runtime.engine`, which keeps
one engine per (URL, connect_args)."""

from typing import Any, TypeVar

from prefect.blocks.core import Block
from prefect.filesystems import LocalFileSystem
from prefect_aws import AwsCredentials, S3Bucket
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.engine import make_url

from blocks.documents import documents_named
from shopfloor.errors import UserError
from shopfloor.storage import S3Credentials, StorageLocation

B = TypeVar("B", bound=Block)


def load_block(name: str, block_class: type[B] | None = None) -> B:
    """Load block ``name``; an unknown name gives one clear line, not a traceback."""
    try:
        if block_class is not None:
            return block_class.load(name)
        return Block.load(_slug_name(name))
    except (ValueError, KeyError) as exc:
        raise UserError(
            f"block {name!r} not found ({exc}); create it with `shopfloor blocks bootstrap`"
        ) from None


def _slug_name(name: str) -> str:
    """``Block.load`` needs ``type-slug/name``; find the slug for a bare name."""
    if "/" in name:
        return name
    matches = sorted((d for d in documents_named(name) if d.block_type is not None),
                     key=lambda d: d.updated or d.created or 0, reverse=True)
    if not matches:
        raise ValueError(f"no block document named {name!r}")
    # Several types may share a name; the most recently saved one is the one in use.
    return f"{matches[0].block_type.slug}/{name}"


def connector_url(connector: SqlAlchemyConnector) -> str:
    """The connector's full URL (with the secret), for engines and JDBC; never log it.

    Built from the block's public ``connection_info`` (components or a URL string), the
    same way the connector builds its own engine.
    """
    info = connector.connection_info
    url = info.create_url() if isinstance(info, ConnectionComponents) else make_url(str(info))
    return url.render_as_string(hide_password=False)


def connector_connect_args(connector: SqlAlchemyConnector) -> dict[str, Any]:
    """The keyword arguments the block passes to the driver's ``connect()`` (sslmode
    files, timeouts...): part of how to reach the database, so every engine keeps them."""
    return dict(connector.connect_args or {})


def s3_credentials(creds: AwsCredentials | None) -> S3Credentials:
    """Plain S3 settings from an ``AwsCredentials`` block."""
    if creds is None:
        return S3Credentials()
    secret = creds.aws_secret_access_key
    token = creds.aws_session_token
    params = creds.aws_client_parameters
    return S3Credentials(
        key_id=creds.aws_access_key_id,
        secret=secret.get_secret_value() if secret else None,
        session_token=token.get_secret_value() if token else None,
        region=creds.region_name,
        endpoint_url=params.endpoint_url if params else None,
    )


def storage_from_block(block: Block) -> StorageLocation:
    """A :class:`StorageLocation` from an ``S3Bucket`` or a ``LocalFileSystem`` block."""
    if isinstance(block, S3Bucket):
        return StorageLocation("s3", block.bucket_name, block.bucket_folder or "",
                               s3_credentials(block.credentials))
    if isinstance(block, LocalFileSystem):
        return StorageLocation("local", block.basepath or ".")
    raise UserError(
        f"block type {type(block).__name__} is not storage: use S3Bucket or LocalFileSystem"
    )


def load_storage(name: str) -> StorageLocation:
    """The storage location of the ``S3Bucket`` or ``LocalFileSystem`` block ``name``."""
    return storage_from_block(load_block(name))


def require_blocks(*names: str) -> None:
    """Fail with one clear line if any of these blocks does not exist.

    Loads each block once and connects to nothing: what a CLI command runs before it
    starts a flow, so an unknown name is refused before a flow run exists.
    """
    for name in dict.fromkeys(names):
        load_block(name)
