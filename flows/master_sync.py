"""Flow ``master-data-sync``: locations and thresholds from the source to the target."""

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import State

from shopfloor.aggregation.locations import sync_row, sync_verdict
from tasks.aggregation import check_databases, sync_locations
from tasks.outcomes import ON_FAILURE, conclude
from tasks.runtime import run_id

# A sync of a few thousand locations takes seconds; a run still going after this long is
# stuck on a lock or a dead connection, and ends Failed so someone is told.
TIMEOUT_SECONDS = 30 * 60


@flow(name="master-data-sync", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def master_data_sync(
    source_db: str = "shopfloor-source-db",
    target_db: str = "shopfloor-warehouse-db",
) -> dict[str, Any] | State:
    """Upsert locations and their thresholds from the source into the target database.

    Locations missing from the source are marked inactive, never deleted (hourly
    history refers to them). Source rows that fail validation (e.g. a threshold min
    above its max) go to ``quarantine`` with their reasons; the others go through, and
    the run ends ``Degraded``. A source without any location changes nothing: ``Idle``
    when the target has no active location either, Failed when it has (an empty master
    table would otherwise silence every threshold). Writes hold a slot of the
    ``shopfloor-warehouse-db`` concurrency limit.

    Args:
        source_db: SqlAlchemyConnector block with the master ``location`` table.
        target_db: SqlAlchemyConnector block to sync into (the warehouse).
    """
    started = time.perf_counter()
    check_databases(source_db, target_db)  # unknown blocks fail here, then unreachable ones
    result = sync_locations(source_db, target_db, run_id())
    create_table_artifact([sync_row(result, time.perf_counter() - started)],
                          key="master-data-sync", description="Master data sync")
    return conclude(sync_verdict(result), result)
