"""Flow ``anomaly-detection``: deviations, spikes, flatlines and gaps in ``temperature_hourly``
-> the ``anomaly`` table and one ``shopfloor.anomaly.detected`` event per new finding."""

import time
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import State
from pydantic import Field

from shopfloor.aggregation.hours import as_utc, resolve_timezone
from shopfloor.anomaly.findings import DetectorParams
from shopfloor.anomaly.run import findings_table, plan_hours, summarise, verdict
from shopfloor.anomaly.sources import Series
from shopfloor.anomaly.tag_settings import check_settings
from shopfloor.errors import UserError
from shopfloor.params import IsoDateTime, TimeZone
from tasks.anomaly import emit_anomaly_events, find_anomalies, store_findings
from tasks.outcomes import ON_FAILURE, conclude
from tasks.runtime import logical_now, run_id

TIMEOUT_SECONDS = 50 * 60  # scheduled hourly


def check_parameters(start: datetime | None, end: datetime | None, timezone: str,
                     params: DetectorParams) -> ZoneInfo:
    """Refuse what the parameter schema cannot say: ``start`` and ``end`` both or neither,
    ``end`` after ``start``, detector settings that fit together.

    Raises:
        ShopfloorError: with one line saying what to change.
    """
    tz = resolve_timezone(timezone)
    if (start is None) != (end is None):
        raise UserError("give both start and end, or neither (the last closed hours)")
    if start is not None and as_utc(end, tz) <= as_utc(start, tz):
        raise UserError(f"end {end} must be after start {start}")
    params.check()
    return tz


@flow(name="anomaly-detection", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def detect_anomalies(
    start: IsoDateTime | None = None,
    end: IsoDateTime | None = None,
    target_db: str = "shopfloor-warehouse-db",
    timezone: TimeZone = "UTC",
    lookback_hours: Annotated[int, Field(ge=1, le=24 * 92)] = 24,
    history_days: Annotated[int, Field(ge=7, le=366)] = 28,
    deviation_threshold: Annotated[float, Field(gt=0)] = 3.5,
    spike_threshold: Annotated[float, Field(gt=0)] = 5.0,
    flatline_hours: Annotated[int, Field(ge=2, le=24 * 31)] = 6,
    min_samples: Annotated[int, Field(ge=1)] = 1,
    max_events: Annotated[int, Field(ge=0, le=10000)] = 1000,
    series: Series = "all",
    tag_settings: dict[str, dict[str, float]] = {},  # noqa: B006 - JSON default; never mutated
) -> dict[str, Any] | State:
    """Find what thresholds miss in the hourly rows and announce each finding once.

    Per location and measure (hourly averages): a value far from the same local hour
    on the previous ``history_days`` days (robust z of median and MAD), an hour-to-hour
    change far beyond the usual one (a spike), ``flatline_hours`` hours without any
    change (a stuck sensor) and hours without a row, with fewer than ``min_samples``
    samples, or without a value of one measure (a gap). Findings go to the ``anomaly``
    table; those not stored before are emitted as ``shopfloor.anomaly.detected``
    (resource ``shopfloor.location.<loc_id>``), so a rerun or an overlapping window
    announces nothing twice. docs/anomalies.md explains each detector.

    Ends ``Idle`` when the window has no hourly row, ``Degraded`` when more new findings
    than ``max_events`` were found (all stored, not all announced).

    Args:
        start: first hour to judge (naive: local to ``timezone``); with ``end``. Leave both
            empty for the ``lookback_hours`` closed hours before the run's logical time.
        end: end of the hours to judge, exclusive.
        target_db: SqlAlchemyConnector block holding ``temperature_hourly`` and ``anomaly``.
        timezone: IANA zone of the hourly rows (the hourly aggregation's ``timezone``).
        lookback_hours: hours judged by a run without ``start``/``end``; they overlap
            from run to run, so late rows are judged again and nothing is missed.
        history_days: days of the same local hour a value is compared with.
        deviation_threshold: robust z beyond which a value is a deviation.
        spike_threshold: robust z of an hour-to-hour change beyond which it is a spike.
        flatline_hours: hours without change that make a stuck sensor.
        min_samples: an hour with fewer samples than this is a gap.
        max_events: at most this many events per run.
        series: ``measures``: the seed's three in ``temperature_hourly``; ``tags``: every
            tag's hourly averages in ``tag_hourly`` (a finding's measure is ``tag:<id>``);
            ``all``: both (a warehouse without ``tag_hourly`` has measures only).
        tag_settings: detector settings per tag (``name`` or ``device/name``) or unit
            (``unit:<unit>``), e.g. ``{"unit:bar": {"spike_threshold": 8}}``; the most
            specific wins (docs/anomalies.md).
    """
    started = time.perf_counter()
    params = DetectorParams(history_days=history_days, deviation_threshold=deviation_threshold,
                            spike_threshold=spike_threshold, flatline_hours=flatline_hours,
                            min_samples=min_samples)
    tz = check_parameters(start, end, timezone, params)
    check_settings(tag_settings, params)
    first, window_first, last = plan_hours(start, end, tz, lookback_hours, params, logical_now())
    found, rows = find_anomalies(target_db, timezone, first, window_first, last, params,
                                 series, tag_settings)
    new = store_findings(target_db, found, run_id()) if found else []
    events = emit_anomaly_events(new, max_events) if new else 0
    summary = summarise(rows, found, new, events, timezone, time.perf_counter() - started)
    create_table_artifact([summary], key="anomaly-detection",
                          description="Anomaly detection run")
    if found:
        create_table_artifact(findings_table(found, {f.key for f in new}),
                              key="anomaly-findings", description="Findings of this run")
    get_run_logger().info("%d findings, %d new, %d events", len(found), len(new), events)
    return conclude(verdict(rows, len(new), events), summary)
