"""Serve every deployment of prefect.yaml from one process, with its schedules.

For a single machine without workers: ``shopfloor serve`` reads the same prefect.yaml
as ``shopfloor deploy`` (names, parameters, crons, concurrency) and runs the flows in
this process when their schedules or the UI ask.
"""

from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron


def _concurrency(spec: dict[str, Any] | int | None) -> ConcurrencyLimitConfig | int | None:
    if spec is None or isinstance(spec, int):
        return spec
    return ConcurrencyLimitConfig(limit=spec["limit"],
                                  collision_strategy=spec.get("collision_strategy", "ENQUEUE"))


def runner_deployments(config: dict[str, Any], root: Path,
                       only: list[str] | None = None) -> list[RunnerDeployment]:
    """One ``RunnerDeployment`` per prefect.yaml deployment (optionally only some flows)."""
    result = []
    for dep in config["deployments"]:
        flow = load_flow_from_entrypoint(str(root / dep["entrypoint"]), use_placeholder_flow=False)
        if only and flow.name not in only:
            continue
        schedules = [Cron(s["cron"], timezone=s.get("timezone", "UTC"))
                     for s in dep.get("schedules") or []]
        result.append(flow.to_deployment(
            name=dep["name"],
            schedules=schedules or None,
            parameters=dep.get("parameters") or {},
            description=dep.get("description"),
            tags=dep.get("tags"),
            concurrency_limit=_concurrency(dep.get("concurrency_limit")),
            enforce_parameter_schema=dep.get("enforce_parameter_schema", True),
        ))
    return result
