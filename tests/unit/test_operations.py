"""operations.yaml (automations, limits, queues) and deploy overrides, without a server."""

from pathlib import Path

import pytest
from prefect.events.actions import ChangeFlowRunState, DoNothing, SendNotification

from blocks.bootstrap import notification_blocks
from deployments.deploy import apply_override, load_config, plan_deploy
from deployments.operations import (
    apply_overrides,
    automation_models,
    gateway_limits,
    load_operations,
)
from shopfloor.errors import ShopfloorError
from shopfloor.modbus.gateway import gateway_limit_name

ROOT = Path(__file__).resolve().parents[2]
BLOCK_ID = "6f1c0a52-8a57-4a3a-9c61-1d2b7c3f2a10"


def test_every_automation_of_the_file_is_a_valid_prefect_automation():
    models = {m.name: m for m in automation_models(load_operations(ROOT), [BLOCK_ID])}
    assert set(models) == {"shopfloor-failed-runs", "shopfloor-capture-stale",
                           "shopfloor-lake-stale", "shopfloor-warehouse-stale",
                           "shopfloor-zombie-runs", "shopfloor-capture-restart",
                           "shopfloor-crashed-runs", "shopfloor-anomalies",
                           "shopfloor-buffer-backlog"}
    failed = models["shopfloor-failed-runs"]
    assert failed.trigger.expect == {"shopfloor.run.failed", "shopfloor.run.degraded"}
    crashed = models["shopfloor-crashed-runs"]
    assert crashed.trigger.expect == {"prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
    assert [type(a) for a in failed.actions] == [SendNotification]
    assert str(failed.actions[0].block_document_id) == BLOCK_ID
    stale = models["shopfloor-capture-stale"].trigger
    assert stale.posture == "Proactive" and stale.for_each == {"prefect.resource.id"}
    assert stale.after == stale.expect == {"shopfloor.capture.completed"}
    restart = models["shopfloor-capture-restart"]
    assert [a.type for a in restart.actions] == ["run-deployment"]
    assert restart.actions[0].source == "inferred"
    zombie = models["shopfloor-zombie-runs"]
    assert [type(a) for a in zombie.actions] == [ChangeFlowRunState]
    anomalies = models["shopfloor-anomalies"]
    assert anomalies.trigger.expect == {"shopfloor.anomaly.detected"}
    assert anomalies.trigger.threshold == 1 and anomalies.trigger.posture == "Reactive"
    assert [type(a) for a in anomalies.actions] == [SendNotification]
    assert zombie.actions[0].state == "CRASHED"
    backlog = models["shopfloor-buffer-backlog"]
    assert backlog.trigger.expect == {"shopfloor.buffer.backlog", "shopfloor.buffer.filling"}
    assert [type(a) for a in backlog.actions] == [SendNotification]


def test_without_a_notification_block_the_automations_still_exist():
    models = automation_models(load_operations(ROOT), [])
    failed = next(m for m in models if m.name == "shopfloor-failed-runs")
    assert [type(a) for a in failed.actions] == [DoNothing]
    zombie = next(m for m in models if m.name == "shopfloor-zombie-runs")
    assert [type(a) for a in zombie.actions] == [ChangeFlowRunState]


def test_one_notification_action_per_block():
    models = automation_models(load_operations(ROOT), [BLOCK_ID, BLOCK_ID.replace("6", "7")])
    failed = next(m for m in models if m.name == "shopfloor-failed-runs")
    assert len(failed.actions) == 2


def test_an_override_changes_only_the_named_windows():
    ops = load_operations(ROOT)
    changed = apply_overrides(ops, {"automations": {"shopfloor-capture-stale": {"within": 90}}})
    by_name = {a["name"]: a for a in changed["automations"]}
    assert by_name["shopfloor-capture-stale"]["trigger"]["within"] == 90
    assert by_name["shopfloor-lake-stale"]["trigger"]["within"] == 10800
    assert next(a for a in ops["automations"]
                if a["name"] == "shopfloor-capture-stale")["trigger"]["within"] == 1800
    with pytest.raises(ShopfloorError, match="unknown automations: nope"):
        apply_overrides(ops, {"automations": {"nope": {"within": 1}}})


def test_deploy_override_replaces_schedules_and_merges_parameters():
    config = load_config(ROOT)
    override = {"deployments": {"modbus_capture/every-hour": {
        "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
        "parameters": {"span_seconds": 60}}}}
    plan = plan_deploy(config, "local", None, ROOT, override=override)
    capture = next(d for d in plan.config["deployments"] if d["name"] == "every-hour")
    assert capture["schedules"] == [{"cron": "* * * * *", "timezone": "UTC"}]
    assert capture["parameters"]["span_seconds"] == 60
    assert capture["parameters"]["devices"] == ["line1-plc"]  # kept
    assert capture["work_pool"]["work_queue_name"] == "capture"
    original = next(d for d in config["deployments"] if d["name"] == "every-hour")
    assert original["schedules"][0]["cron"] == "0 * * * *"  # the loaded config is untouched


def test_deploy_override_refuses_unknown_names_and_fields():
    config = load_config(ROOT)
    with pytest.raises(ShopfloorError, match="unknown deployments: nope/x"):
        apply_override(config, {"deployments": {"nope/x": {}}})
    with pytest.raises(ShopfloorError, match="sets entrypoint"):
        apply_override(config, {"deployments": {"s3_compaction/hourly": {"entrypoint": "x"}}})


def test_queues_put_capture_first_and_backfill_last():
    queues = {q["name"]: q["priority"] for q in load_operations(ROOT)["work_queues"]}
    assert queues["capture"] < queues["scheduled"] < queues["backfill"]
    config = load_config(ROOT)
    by_flow = {d["entrypoint"].rsplit(":", 1)[1]: d["work_pool"]["work_queue_name"]
               for d in config["deployments"]}
    assert by_flow["modbus_capture"] == "capture"
    assert by_flow["hourly_backfill"] == "backfill"
    assert set(by_flow.values()) <= set(queues)


def test_gateway_limits_only_for_shared_or_rtu_over_tcp_endpoints():
    devices = [
        {"host": "10.0.0.7", "port": 502, "transport": "tcp", "unit_id": 1},
        {"host": "10.0.0.7", "port": 502, "transport": "tcp", "unit_id": 2},  # a gateway
        {"host": "10.0.0.8", "port": 502, "transport": "tcp", "unit_id": 1},  # alone
        {"host": "10.0.0.9", "port": 4001, "transport": "rtu-over-tcp", "unit_id": 3},
        {"host": "127.0.0.1", "port": 502, "transport": "serial", "serial_port": "/dev/x"},
    ]
    assert gateway_limits(devices) == ["modbus-gateway-10-0-0-7-502",
                                       "modbus-gateway-10-0-0-9-4001"]


def test_gateway_limit_names():
    assert gateway_limit_name("10.0.0.7", 502) == "modbus-gateway-10-0-0-7-502"
    assert gateway_limit_name("plc.example", 5020) == "modbus-gateway-plc-example-5020"


def test_notification_blocks_come_from_the_environment_and_hide_tokens():
    assert notification_blocks({}) == []
    found = notification_blocks({
        "SHOPFLOOR_NOTIFY_WEBHOOK_URL": "https://hooks.example:8443/T0K3N/secret?x=1",
        "SHOPFLOOR_NOTIFY_SLACK_URL": "https://hooks.slack.com/services/T/B/XYZ",
        "SHOPFLOOR_NOTIFY_SENDGRID_API_KEY": "SG.key", "SHOPFLOOR_NOTIFY_EMAIL_TO": "a@x, b@x",
    })
    names = [name for name, *_ in found]
    assert names == ["shopfloor-notify-webhook", "shopfloor-notify-slack",
                     "shopfloor-notify-email"]
    summaries = " ".join(summary for *_, summary in found)
    assert "T0K3N" not in summaries and "XYZ" not in summaries and "SG.key" not in summaries
    assert "https://hooks.example:8443/..." in summaries
    webhook = found[0][1]
    assert webhook.json_data == {"subject": "{{subject}}", "body": "{{body}}",
                                 "name": "{{name}}"}
