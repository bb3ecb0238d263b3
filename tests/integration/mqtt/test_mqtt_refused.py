"""A subscription the broker refuses (an ACL denying the topic, on brokers that check it
at subscribe time) stops the run with the broker's reason, quickly, instead of a run
that ingests nothing for its whole window.

Mosquitto 2.0 grants every subscription and filters on delivery instead, so no broker
here refuses one: the real Mosquitto answers, and the SUBACK's reason codes are turned
into "Not authorized" on their way to the collector (the only thing faked)."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine

from shopfloor.db.schema import get_tables
from shopfloor.errors import ShopfloorError
from shopfloor.mqtt.ingest import Collector
from tests.integration.mqtt.conftest import (
    Publisher,
    config,
    running,
    samples,
    unique,
    wait_for,
)

T0 = 1_790_000_000_000


def _refusing(collector: Collector) -> Collector:
    """``collector`` as a broker refusing its last subscription would see it."""
    on_subscribe = collector.client.on_subscribe

    def refused(client, userdata, mid, reasons, props) -> None:  # noqa: ANN001
        reasons = [*reasons[:-1], ReasonCode(PacketTypes.SUBACK, "Not authorized")]
        on_subscribe(client, userdata, mid, reasons, props)

    collector.client.on_subscribe = refused
    return collector


def _config(client_id: str, root: str):
    return config(client_id, json=[
        {"topic": f"{root}/allowed/+", "timestamp": "ts", "tags": [{"name": "t", "path": "t"}]},
        {"topic": f"{root}/secret/+", "tags": [{"name": "t", "path": "t"}]}])


def test_a_refused_subscription_stops_a_new_run_with_the_brokers_reason(
        broker: tuple, mqtt_db: Engine) -> None:
    client_id, root = unique("collector"), unique("acl")
    started = time.monotonic()
    with pytest.raises(ShopfloorError, match=rf"refused client {client_id}'s subscription "
                       r"refused: Not authorized"):
        _refusing(Collector(_config(client_id, root), mqtt_db, get_tables())).run(120)
    assert time.monotonic() - started < 10  # not the run's window, nor the 15 s timeout


def test_a_refusal_on_a_resumed_session_loses_nothing_it_kept(
        broker: tuple, mqtt_db: Engine) -> None:
    """The broker sends a resumed session's kept messages before the SUBACK, and the
    collector starts on them: a refusal in that SUBACK stops the run (raising) with
    each of them stored and acknowledged, or left with the broker, which sends it to the
    next run: every value once in the end, whenever the refusal lands."""
    client_id, root = unique("collector"), unique("acl")
    cfg = _config(client_id, root)
    Collector(cfg, mqtt_db, get_tables()).run(0.5)  # the session, kept by the broker
    pub = Publisher()
    for i in range(30):
        pub.publish(f"{root}/allowed/a", f'{{"ts": {T0 + i}, "t": {i}}}')
    pub.close()
    refused = _refusing(Collector(cfg, mqtt_db, get_tables()))
    with pytest.raises(ShopfloorError, match="subscription refused: Not authorized"):
        refused.run(120)
    with running(cfg, mqtt_db):
        rows = wait_for(lambda: (r := samples(mqtt_db, f"{root}/allowed")) and len(r) >= 30
                        and r, "every kept value stored")
    assert [(int(r["ts"].timestamp() * 1000), r["value"]) for r in rows] == \
        [(T0 + i, float(i)) for i in range(30)]
