"""The mqtt-ingest flow's task: run the collector for the window."""

from prefect import get_run_logger, task

from shopfloor.mqtt.config import load_config
from shopfloor.mqtt.ingest import IngestStats, ingest
from tasks import runtime
from tasks.runtime import LIVE


@task(name="ingest-mqtt", **LIVE)
def ingest_task(config_path: str, duration_seconds: float, target_db: str) -> IngestStats:
    """Subscribe on the configured broker for ``duration_seconds`` and store every
    message's values as tag samples, acknowledging a batch once it is committed.

    Args:
        config_path: the YAML configuration (docs/mqtt.md).
        duration_seconds: how long to ingest.
        target_db: SqlAlchemyConnector block of the warehouse.
    """
    config = load_config(config_path)
    logger = get_run_logger()
    logger.info("subscribing as %s to %s:%d: %s", config.broker.client_id,
                config.broker.host, config.broker.port, ", ".join(config.subscriptions()))
    return ingest(config, runtime.engine(target_db), runtime.tables(), duration_seconds,
                  logger=logger)
