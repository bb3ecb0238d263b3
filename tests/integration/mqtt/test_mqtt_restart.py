"""A collector killed (``kill -9``) while QoS 1 messages are being published loses
nothing and duplicates nothing: the broker keeps what it had not acknowledged on the
persistent session, and the next collector stores it (docs/mqtt.md)."""

import json
import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine

from tests.integration.mqtt.conftest import (
    CollectorProcess,
    Publisher,
    db_url,
    samples,
    unique,
    wait_for,
    write_config,
)

T0 = 1_790_000_000_000
PER_PHASE = 150


def test_a_collector_killed_mid_stream_loses_and_duplicates_nothing(
        broker: tuple, mqtt_db: Engine, tmp_path: Path) -> None:
    root = unique("restart")
    path = write_config(tmp_path / "mqtt.yaml", {
        "broker": {"client_id": unique("collector")},
        "json": [{"topic": f"{root}/#", "timestamp": "ts",
                  "tags": [{"name": "v", "path": "v"}, {"name": "w", "path": "w"}]}]})
    pub = Publisher()

    def phase(k: int) -> None:
        for i in range(k * PER_PHASE, (k + 1) * PER_PHASE):
            pub.publish(f"{root}/m{i % 5}", json.dumps({"ts": T0 + i, "v": i, "w": -i}))

    first = CollectorProcess(db_url(mqtt_db), path)
    try:
        phase(0)
        wait_for(lambda: len(samples(mqtt_db, root)) >= 20, "the first points stored")
        first.kill()  # whatever it had received and not committed is not acknowledged
        stored_at_kill = len(samples(mqtt_db, root))
        phase(1)  # while no collector runs: the broker queues them on the session
    finally:
        first.stop()
    second = CollectorProcess(db_url(mqtt_db), path)
    try:
        phase(2)
        total = 3 * PER_PHASE
        try:
            wait_for(lambda: len(samples(mqtt_db, root)) >= 2 * total, "every point stored")
        except AssertionError:
            got = {(int(r["ts"].timestamp() * 1000) - T0, r["name"])
                   for r in samples(mqtt_db, root)}
            missing = sorted({i for i in range(total) for n in "vw"} - {i for i, _ in got})
            raise AssertionError(f"{len(got)} of {2 * total} points stored (at the kill: "
                                 f"{stored_at_kill}); messages missing: {missing}") from None
    finally:
        second.stop()
        pub.close()
    rows = samples(mqtt_db, root)
    assert stored_at_kill < 2 * total
    assert len(rows) == 2 * total  # no point twice ((tag, ts) is the key: none extra)
    got = sorted((int(r["ts"].timestamp() * 1000) - T0, r["name"], r["value"]) for r in rows)
    want = sorted([(i, "v", float(i)) for i in range(total)] +
                  [(i, "w", float(-i)) for i in range(total)])
    assert got == want
    assert {r["quality"] for r in rows} == {192}


def test_a_redelivery_of_messages_without_a_timestamp_lands_once(
        broker: tuple, mqtt_db: Engine, tmp_path: Path) -> None:
    """Plain JSON without a timestamp is keyed on its receive time. A collector that
    stored messages but was killed before their PUBACKs (here: one that never sends
    them) gets them all again from the broker, marked DUP, on the next connection: they
    must take the receive time they were stored at, not a new one (without it every
    message stored before the kill lands twice). The kill falls in the middle of the
    stream; more is published while no collector runs and after the restart."""
    root = unique("redeliver")
    path = write_config(tmp_path / "mqtt.yaml", {
        "broker": {"client_id": unique("collector")},
        "json": [{"topic": f"{root}/#",
                  "tags": [{"name": "v", "path": "v"}, {"name": "w", "path": "w"}]}]})
    pub = Publisher()
    total = 3 * PER_PHASE

    def publish(start: int, stop: int) -> None:
        for i in range(start, stop):
            pub.publish(f"{root}/m{i % 5}", json.dumps({"v": i, "w": -i}))

    first = CollectorProcess(db_url(mqtt_db), path, acknowledge=False)
    streaming = threading.Thread(target=publish, args=(0, 2 * PER_PHASE))
    try:
        streaming.start()
        wait_for(lambda: len(samples(mqtt_db, root)) >= 100, "the first points stored")
        first.kill()  # mid-stream: every message it stored is unacknowledged
        stored_at_kill = len(samples(mqtt_db, root))
        streaming.join(60)  # the rest of the stream while no collector runs
    finally:
        first.stop()
    second = CollectorProcess(db_url(mqtt_db), path)
    try:
        publish(2 * PER_PHASE, total)
        # The broker resends the unacknowledged messages first (then what it queued,
        # then the new ones) and batches are stored in order: once every value is in,
        # every redelivery was stored before the last of them.
        wait_for(lambda: len({r["value"] for r in samples(mqtt_db, root)
                              if r["name"] == "v"}) == total, "every value stored")
    finally:
        second.stop()
        pub.close()
    rows = samples(mqtt_db, root)
    counts = Counter((r["name"], r["value"]) for r in rows)
    twice = sorted(k for k, n in counts.items() if n > 1)
    assert not twice, (f"{len(twice)} values stored more than once, e.g. {twice[:5]} "
                       f"({stored_at_kill} points stored at the kill)")
    missing = sorted({i for i in range(total)} - {int(v) for n, v in counts if n == "v"})
    assert not missing, f"stored at the kill {stored_at_kill}, missing {missing}"
    assert 100 <= stored_at_kill < 2 * total
    assert sorted(counts) == sorted([("v", float(i)) for i in range(total)]
                                    + [("w", float(-i)) for i in range(total)])
    assert {r["quality"] for r in rows} == {192}
