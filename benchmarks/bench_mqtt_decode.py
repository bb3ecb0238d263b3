"""MQTT decoding alone (not a test): the CPU time ``shopfloor.mqtt.json_messages`` takes
per message on ``bench_mqtt.py``'s messages (100 numbers and a timestamp), without a
broker or a database, so that a change to the per-value loop can be measured on a busy
machine, where the end-to-end benchmark's noise hides it.

Four cases: ``good_row`` on messages whose values are all good (the benchmark's and the
common path), and on messages with one text value in ten (it gives up at the first);
``message_points`` on messages without a timestamp (each value a point) and on the
messages with text values (judged one by one). Each figure is the minimum over
``--repeats`` passes of the process' CPU time, per message. Run:
``.venv/bin/python benchmarks/bench_mqtt_decode.py [--repeats 20]``.
"""

import argparse
import json
import time
from collections.abc import Callable

from shopfloor.mqtt import json_messages as jm
from shopfloor.mqtt.config import parse_config

T0 = 1_790_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=900)
    ap.add_argument("--tags", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    tags = [{"name": f"t{k}", "path": f"v.t{k}", "min_value": -1e9, "max_value": 1e9}
            for k in range(a.tags)]
    cfg = parse_config({"broker": {"client_id": "bench"}, "json": [
        {"topic": "s/#", "timestamp": "ts", "tags": tags}, {"topic": "p/#", "tags": tags}]})
    stamped, plain = cfg.json_topics
    good = [json.dumps({"ts": T0 + i, "v": {f"t{k}": i * 0.5 + k for k in range(a.tags)}})
            .encode() for i in range(a.messages)]
    mixed = [json.dumps({"ts": T0 + i, "v": {f"t{k}": "x" if k % 10 == 0 else i * 0.5 + k
                                             for k in range(a.tags)}}).encode()
             for i in range(a.messages)]
    cache: jm.Plans = {}

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(a.repeats):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return min(times) / a.messages * 1e6

    cases = {
        "good_row, all good": lambda: [jm.good_row(stamped, "s/a", p, cache) for p in good],
        "good_row, one text value in ten": lambda: [jm.good_row(stamped, "s/a", p, cache)
                                                    for p in mixed],
        "message_points, no timestamp": lambda: [jm.message_points(plain, "p/a", p, T0, cache)
                                                 for p in good],
        "message_points, one text value in ten": lambda: [
            jm.message_points(stamped, "s/a", p, T0, cache) for p in mixed],
    }
    for name, fn in cases.items():
        print(f"{name}: {best(fn):.1f} us a message")


if __name__ == "__main__":
    main()
