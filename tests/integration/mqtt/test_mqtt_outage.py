"""A warehouse outage mid-run loses nothing: a batch that cannot be committed is not
acknowledged, the broker keeps it and what follows, and the collector stores all of it
once the warehouse is back (docs/mqtt.md)."""

import json

from sqlalchemy import Engine

from shopfloor.db.engine import init_db, make_engine
from tests.integration.mqtt.conftest import Publisher, config, running, samples, unique, wait_for
from tests.pgcluster import private_cluster

T0 = 1_790_000_000_000


def test_a_warehouse_restart_mid_run_loses_and_duplicates_nothing(broker: tuple) -> None:
    root = unique("outage")
    cfg = config(unique("collector"), json=[{"topic": f"{root}/+", "timestamp": "ts",
                                             "tags": [{"name": "v", "path": "v"}]}])
    pub = Publisher()
    with private_cluster() as cluster:
        engine: Engine = make_engine(cluster.url)
        init_db(engine)
        with running(cfg, engine) as (collector, stats):
            for i in range(40):
                pub.publish(f"{root}/a", json.dumps({"ts": T0 + i, "v": i}))
            wait_for(lambda: len(samples(engine, root)) == 40, "the first 40 stored")
            cluster.stop("immediate")
            for i in range(40, 140):  # the collector fails to store these: not acknowledged
                pub.publish(f"{root}/a", json.dumps({"ts": T0 + i, "v": i}))
            wait_for(lambda: collector.stats.write_errors >= 1, "a failed write")
            cluster.start()
            wait_for(lambda: len(samples(engine, root)) >= 140, "every value stored")
        pub.close()
        rows = samples(engine, root)
        engine.dispose()
    assert [(int(r["ts"].timestamp() * 1000) - T0, r["value"]) for r in rows] == \
        [(i, float(i)) for i in range(140)]
    (result,) = stats
    assert result.write_errors >= 1 and result.left_with_broker == 0
    assert result.received >= 140
