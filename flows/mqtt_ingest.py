"""The ``mqtt-ingest`` flow: subscribe for a window, store every message as tag samples."""

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import State
from pydantic import Field

from shopfloor.mqtt.outcome import verdict
from shopfloor.params import BlockName
from tasks.mqtt import ingest_task
from tasks.outcomes import ON_FAILURE, conclude

# An hour's window (the prefect.yaml deployment) and room to close the last batch.
TIMEOUT_SECONDS = 3600 + 600
TIMEOUT_MARGIN_SECONDS = 120.0
DurationSeconds = Annotated[float, Field(gt=0, le=TIMEOUT_SECONDS - TIMEOUT_MARGIN_SECONDS,
                                         allow_inf_nan=False)]


@flow(name="mqtt-ingest", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def mqtt_ingest(
    config: str = "config/mqtt.yaml",
    duration_seconds: DurationSeconds = 60.0,
    target_db: BlockName = "shopfloor-warehouse-db",
) -> dict[str, object] | State:
    """Ingest MQTT messages (JSON topics and Sparkplug B) into ``tag_samples``.

    The collector subscribes with QoS 1 on a persistent session (a fixed client id that
    the broker keeps between runs), turns every message into tag samples with a quality
    per point, stores a batch in one warehouse transaction and only then acknowledges
    its messages. What arrives between two runs, or while the warehouse is down, waits
    at the broker and is stored by the next run (docs/mqtt.md).

    Args:
        config: YAML file with the broker, the JSON topic mappings and the Sparkplug B
            groups (relative to the working directory).
        duration_seconds: how long to ingest (a deployment: its schedule's period).
        target_db: SqlAlchemyConnector block of the warehouse.

    Returns:
        What the run did (messages received, points written, bad and uncertain points,
        Sparkplug B births, deaths, gaps, rebirth requests). Degraded when the warehouse
        failed and messages were left with the broker; Failed when the configuration is
        invalid or the broker refused the connection.
    """
    stats = ingest_task(config, duration_seconds, target_db)
    row = stats.as_row()
    create_table_artifact(table=[row], key="mqtt-ingest",
                          description="MQTT ingestion: what the run received and wrote")
    decided = verdict(stats)
    get_run_logger().info("%s: %s", decided.kind, decided.message)
    return conclude(decided, row)
