"""Flow ``refresh-credentials``: database blocks follow their AWS Secrets Manager secrets.

The seed's weekly rotation DAG, as a flow: for each (block <- secret) pair read the
secret's current value, check that its credentials connect, and only then save them
into the ``SqlAlchemyConnector`` block under the same name, so the next run of any flow
that loads the block connects with them. docs/credentials.md has the set-up.
"""

import time
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import State
from pydantic import Field

from blocks.resolve import require_blocks
from shopfloor.db.credentials import refresh_verdict
from tasks.credentials import refresh_block_credentials
from tasks.outcomes import ON_FAILURE, conclude, idle
from tasks.variables import CREDENTIAL_SECRETS, from_variable

# One read and one connection per block: minutes at most. A run still going after this
# long hangs on an endpoint and ends Failed, so someone is told.
TIMEOUT_SECONDS = 15 * 60

BlockSecrets = dict[Annotated[str, Field(min_length=1)], Annotated[str, Field(min_length=1)]]
"""``{SqlAlchemyConnector block name: Secrets Manager secret name or ARN}``."""


@flow(name="refresh-credentials", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def refresh_credentials(
    block_secrets: BlockSecrets | None = None,
    aws_credentials: str = "shopfloor-aws",
) -> list[dict[str, Any]] | State:
    """Update database blocks from their AWS Secrets Manager secrets, checked first.

    Each secret is JSON in the shape RDS rotation writes (``engine``, ``host``, ``port``,
    ``username``, ``password``, ``dbname``). A block whose new credentials do not connect
    (``SELECT 1``) keeps its old ones and the run ends Failed after the other blocks are
    done, which the failure automation reports. Blocks that already hold their secret's
    credentials are ``unchanged``; a run that changed nothing ends ``Idle``. A block
    that does not exist yet is created from a secret that names its engine and host.
    The artifact ``refresh-credentials`` lists block, secret and result, never a password.

    Args:
        block_secrets: ``{block name: secret name or ARN}``; none takes the Prefect
            Variable ``shopfloor_credential_secrets`` (same shape), else nothing to do.
        aws_credentials: AwsCredentials block used to read the secrets.
    """
    started = time.perf_counter()
    pairs = from_variable(CREDENTIAL_SECRETS, block_secrets, {}, BlockSecrets)
    if not pairs:
        create_table_artifact([], key="refresh-credentials",
                              description="Credential refresh: no block mapped to a secret")
        return idle([], f"no block mapped to a secret (parameter block_secrets or Prefect "
                        f"Variable {CREDENTIAL_SECRETS})")
    require_blocks(aws_credentials)  # an unknown name fails once, not once per block
    results = [refresh_block_credentials(block, secret, aws_credentials)
               for block, secret in pairs.items()]
    rows = [vars(r) for r in results]
    seconds = round(time.perf_counter() - started, 2)
    create_table_artifact(rows, key="refresh-credentials",
                          description=f"Credential refresh of {len(rows)} block(s), {seconds} s")
    return conclude(refresh_verdict(results), rows)
