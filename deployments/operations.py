"""Apply ``operations.yaml``: global concurrency limits, work queues with priorities and
automations, idempotently (by name), beside the deployments of prefect.yaml.

``shopfloor deploy`` and ``shopfloor serve`` call :func:`apply_operations`; a second call
updates what exists and creates what is missing, never duplicating an automation.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound

from blocks.documents import documents_named, documents_of_type
from shopfloor.errors import UserError
from shopfloor.modbus.gateway import gateway_limit_name

OPERATIONS_FILE = "operations.yaml"
MODBUS_DEVICE_SLUG = "shopfloor-modbus-device"  # blocks.modbus.ModbusDevice


@dataclass
class AppliedOperations:
    """What :func:`apply_operations` did, for the CLI's report."""

    limits: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    automations: list[str] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_operations(root: Path) -> dict[str, Any]:
    """The parsed operations.yaml of the project at ``root``."""
    path = root / OPERATIONS_FILE
    if not path.exists():
        raise UserError(f"{OPERATIONS_FILE} not found beside prefect.yaml")
    return yaml.safe_load(path.read_text()) or {}


def apply_overrides(ops: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """``ops`` with an override's ``automations: {name: {within: seconds}}`` applied (pure).

    The soak test compresses freshness windows this way instead of a second file.
    """
    result = copy.deepcopy(ops)
    changes = (override or {}).get("automations") or {}
    known = {a["name"] for a in result.get("automations") or []}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise UserError(f"override names unknown automations: {', '.join(unknown)}")
    for auto in result.get("automations") or []:
        for key, value in (changes.get(auto["name"]) or {}).items():
            auto["trigger"][key] = value
    return result


def automation_models(ops: dict[str, Any], notify_ids: list[str]) -> list[AutomationCore]:
    """The automations of ``ops`` as Prefect models; every ``send-notification`` action is
    expanded to one action per notification block id (none: the action is dropped)."""
    models = []
    for spec in ops.get("automations") or []:
        actions = []
        for action in spec.get("actions") or []:
            if action.get("type") == "send-notification":
                actions += [dict(action, block_document_id=i) for i in notify_ids]
            else:
                actions.append(action)
        if not actions:
            actions = [{"type": "do-nothing"}]
        models.append(AutomationCore.model_validate(
            {k: v for k, v in spec.items() if k != "actions"} | {"actions": actions}))
    return models


def _notify_ids(client: SyncPrefectClient, names: list[str],
                applied: AppliedOperations) -> list[str]:
    ids = []
    for name in names:
        found = documents_named(name, client)
        if found:
            ids.append(str(found[0].id))
            applied.notify.append(name)
    if not ids:
        applied.warnings.append(
            "no notification block exists (" + ", ".join(names) + "): automations are created "
            "without a notification; set SHOPFLOOR_NOTIFY_WEBHOOK_URL and run "
            "`shopfloor blocks bootstrap`, then deploy again")
    return ids


def gateway_limits(devices: list[dict[str, Any]]) -> list[str]:
    """The gateway limits to create for the ModbusDevice blocks' ``devices`` (their data):
    one per ``host:port`` that is a gateway, i.e. shared by several devices (unit ids
    behind one Modbus TCP or RTU-over-TCP gateway) or reached as RTU over TCP. A
    device alone on its own TCP endpoint takes no limit, so its polls cost no API call.
    """
    users: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for data in devices:
        if data.get("transport") == "serial" or not data.get("host") or not data.get("port"):
            continue  # a serial line is one device's own, not a shared gateway
        users.setdefault((str(data["host"]), int(data["port"])), []).append(data)
    return sorted(gateway_limit_name(host, port) for (host, port), found in users.items()
                  if len(found) > 1 or any(d.get("transport") == "rtu-over-tcp"
                                           for d in found))


def _gateway_limits(client: SyncPrefectClient) -> list[str]:
    return gateway_limits([doc.data for doc in documents_of_type(MODBUS_DEVICE_SLUG, client)
                           if doc.data])


def _ensure_limits(client: SyncPrefectClient, ops: dict[str, Any],
                   applied: AppliedOperations) -> None:
    wanted = [(lim["name"], int(lim["limit"])) for lim in ops.get("concurrency_limits") or []]
    wanted += [(name, 1) for name in _gateway_limits(client)]
    for name, limit in wanted:
        client.upsert_global_concurrency_limit_by_name(name, limit)
        applied.limits.append(f"{name}={limit}")


def _ensure_queues(client: SyncPrefectClient, ops: dict[str, Any], pool: str | None,
                   applied: AppliedOperations) -> None:
    if pool is None:
        return
    for q in ops.get("work_queues") or []:
        opts = {"priority": q.get("priority"), "concurrency_limit": q.get("concurrency_limit")}
        try:
            queue = client.read_work_queue_by_name(q["name"], work_pool_name=pool)
            client.update_work_queue(queue.id, **{k: v for k, v in opts.items()
                                                  if v is not None})
        except ObjectNotFound:
            client.create_work_queue(q["name"], work_pool_name=pool,
                                     **{k: v for k, v in opts.items() if v is not None})
        applied.queues.append(f"{pool}/{q['name']} (priority {q.get('priority')})")


def _ensure_automations(client: SyncPrefectClient, models: list[AutomationCore],
                        applied: AppliedOperations) -> None:
    for model in models:
        existing = client.read_automations_by_name(model.name)
        if existing:
            client.update_automation(existing[0].id, model)
            for extra in existing[1:]:  # a duplicate made by hand: keep one
                client.delete_automation(extra.id)
        else:
            client.create_automation(model)
        applied.automations.append(model.name)


def apply_operations(root: Path, pool: str | None = None,
                     override: dict[str, Any] | None = None) -> AppliedOperations:
    """Create or update the limits, the work queues of ``pool`` and the automations of
    operations.yaml on the current Prefect API; safe to repeat."""
    ops = apply_overrides(load_operations(root), override)
    applied = AppliedOperations()
    with get_client(sync_client=True) as client:
        notify = _notify_ids(client, list(ops.get("notify") or []), applied)
        models = automation_models(ops, notify)  # validated before anything changes
        _ensure_limits(client, ops, applied)
        _ensure_queues(client, ops, pool, applied)
        _ensure_automations(client, models, applied)
    return applied
