"""Tasks of the anomaly-detection flow: find, store (only new findings), announce."""

from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task

from shopfloor.aggregation.hours import resolve_timezone
from shopfloor.anomaly.findings import DetectorParams, Finding
from shopfloor.anomaly.sources import Series, find_all
from shopfloor.anomaly.store import insert_findings
from shopfloor.anomaly.tag_settings import Settings
from shopfloor.db.types import utcnow
from tasks import runtime
from tasks.outcomes import emit
from tasks.runtime import RETRIED, warehouse_slot

EVENT = "shopfloor.anomaly.detected"


@task(name="find-anomalies", **RETRIED)
def find_anomalies(target_db: str, timezone: str, first: int, window_first: int, last: int,
                   params: DetectorParams, series: Series = "all",
                   tag_settings: Settings | None = None) -> tuple[list[Finding], int]:
    """Read the hourly rows of local hours ``first..last`` and run the detectors.

    Args:
        target_db: block holding ``temperature_hourly`` and, for tags, ``tag_hourly``.
        timezone: IANA zone of the hourly rows' ``ymd``/``hh``.
        first: first local hour index read (history).
        window_first: first local hour index a finding may be about.
        last: last local hour index (inclusive).
        params: detector settings.
        series: ``measures`` (the seed's three in ``temperature_hourly``), ``tags``
            (every tag in ``tag_hourly``) or ``all``.
        tag_settings: detector settings per tag or unit (shopfloor/anomaly/tag_settings.py).

    Returns:
        The findings, and the number of hourly rows inside the window.
    """
    engine, tables = runtime.engine(target_db), runtime.tables()
    with engine.connect() as conn:
        found, read, in_window = find_all(conn, tables, resolve_timezone(timezone), timezone,
                                          (first, window_first, last), params, series,
                                          tag_settings)
    get_run_logger().info("%d hourly rows read (%d in the window): %d findings", read,
                          in_window, len(found))
    return found, in_window


@task(name="store-findings", **RETRIED)
def store_findings(target_db: str, findings: list[Finding], run_id: str | None
                   ) -> list[Finding]:
    """Insert the findings not stored yet, in one transaction; return only those new ones.

    Args:
        target_db: block holding the ``anomaly`` table.
        findings: the findings of this run.
        run_id: the flow run id, stored with each new row.
    """
    engine, tables = runtime.engine(target_db), runtime.tables()
    with warehouse_slot(), engine.begin() as conn:
        new = insert_findings(conn, tables, findings, run_id, utcnow())
    get_run_logger().info("%d findings, %d new", len(findings), len(new))
    return new


def anomaly_event(finding: Finding) -> dict[str, Any]:
    """Arguments of :func:`tasks.outcomes.emit` for one finding: resource
    ``shopfloor.location.<loc_id>`` (as threshold alerts), labelled with kind and measure
    so an automation can match on them."""
    payload = {k: v for k, v in asdict(finding).items() if k != "hour_start"}
    payload["hour_start"] = finding.hour_start.isoformat()
    return {"event": EVENT, "resource_id": f"shopfloor.location.{finding.loc_id}",
            "payload": payload, "prefect.resource.name": finding.loc_id,
            "shopfloor.anomaly.kind": finding.kind, "shopfloor.measure": finding.measure,
            **({"shopfloor.tag": finding.detail["tag"]} if "tag" in finding.detail else {})}


@task(name="emit-anomaly-events")
def emit_anomaly_events(findings: list[Finding], max_events: int) -> int:
    """Emit one ``shopfloor.anomaly.detected`` event per finding, at most ``max_events``.

    Args:
        findings: the new findings (stored for the first time in this run).
        max_events: a cap, so that one run never floods the event stream.
    """
    sent = 0
    for finding in findings[:max_events]:
        emit(**anomaly_event(finding))
        sent += 1
    get_run_logger().info("%d anomaly events emitted", sent)
    return sent
