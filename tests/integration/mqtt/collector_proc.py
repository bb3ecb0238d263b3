"""A collector in its own process, for the tests that kill it (``kill -9``):
``python -m tests.integration.mqtt.collector_proc <database url> <config file> <seconds>
[no-ack]``. Prints ``connected`` once the broker accepted it. With ``no-ack`` it stores
every batch but never sends the PUBACKs: killed, it is a collector that crashed between
each commit and its acknowledgements, so the broker sends everything it stored again."""

import sys

from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.mqtt.config import load_config
from shopfloor.mqtt.ingest import Collector


def main() -> None:
    url, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    collector = Collector(load_config(path), make_engine(url), get_tables())
    if sys.argv[4:] == ["no-ack"]:
        collector.client.ack = lambda *_args, **_kw: None  # type: ignore[method-assign]
    collector.run(seconds, on_connected=lambda: print("connected", flush=True))


if __name__ == "__main__":
    main()
