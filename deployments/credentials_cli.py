"""``shopfloor credentials refresh``: run the refresh-credentials flow by hand."""

from typing import Annotated

import typer

credentials_app = typer.Typer(no_args_is_help=True,
                              help="Database credentials from AWS Secrets Manager.")


def parse_pairs(items: list[str]) -> dict[str, str]:
    """``["block=secret", ...]`` -> ``{"block": "secret"}``; a missing ``=`` is a clear
    error. The secret part may hold ``=`` or ``:`` (an ARN)."""
    from shopfloor.errors import UserError

    pairs = {}
    for item in items:
        block, sep, secret = item.partition("=")
        if not sep or not block.strip() or not secret.strip():
            raise UserError(f"--secret takes BLOCK=SECRET, got {item!r}")
        pairs[block.strip()] = secret.strip()
    return pairs


@credentials_app.command("refresh")
def refresh(
    secret: Annotated[list[str] | None, typer.Option(
        help="BLOCK=SECRET: SqlAlchemyConnector block and its Secrets Manager secret name "
             "or ARN (repeat). None: the Prefect Variable shopfloor_credential_secrets.")]
    = None,
    aws_credentials: Annotated[str, typer.Option(help="AwsCredentials block.")]
    = "shopfloor-aws",
) -> None:
    """Update database blocks from their secrets, each only after its new credentials
    connect (no password is printed)."""
    from blocks.resolve import require_blocks
    from flows.refresh_credentials import refresh_credentials
    from shopfloor.params import check_typed

    params = {"block_secrets": parse_pairs(secret) if secret else None,
              "aws_credentials": aws_credentials}
    check_typed(refresh_credentials, **params)
    require_blocks(aws_credentials)
    state = refresh_credentials(**params, return_state=True)
    rows = state.result()  # a Failed run raises its error here: one `error:` line
    for row in rows:
        typer.echo(f"{row['block']:<24} {row['result']:<10} {row['secret']}  {row['detail']}")
    if state.name != "Completed":
        typer.echo(f"{state.name}: {state.message}")
