"""Tasks of the ``refresh-credentials`` flow."""

from prefect import get_run_logger, task

from blocks.credentials import FAILED, RefreshResult, refresh_connector


@task(name="refresh-block-credentials", task_run_name="refresh {block}")
def refresh_block_credentials(block: str, secret_id: str,
                              aws_credentials: str) -> RefreshResult:
    """Update ``SqlAlchemyConnector`` block ``block`` from Secrets Manager secret
    ``secret_id`` once the new credentials connect; a failure is returned, not raised,
    so the other blocks are still refreshed (the flow fails at the end).

    Not retried: a secret that does not connect now will not after a few seconds, and
    the weekly schedule (or a person) runs it again.
    """
    result = refresh_connector(block, secret_id, aws_credentials)
    log = get_run_logger().error if result.result == FAILED else get_run_logger().info
    log("%s <- %s: %s (%s)", block, secret_id, result.result, result.detail)
    return result
