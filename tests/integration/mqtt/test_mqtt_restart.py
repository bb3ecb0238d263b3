"""A collector killed (``kill -9``) while QoS 1 messages are being published loses
nothing and duplicates nothing: the broker keeps what it had not acknowledged on the
persistent session, and the next collector stores it (docs/mqtt.md)."""

import json
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
