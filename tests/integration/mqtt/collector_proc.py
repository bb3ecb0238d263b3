"""A collector in its own process, for the tests that kill it (``kill -9``):
``python -m tests.integration.mqtt.collector_proc <database url> <config file> <seconds>``.
Prints ``connected`` once the broker accepted it."""

import sys

from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.mqtt.config import load_config
from shopfloor.mqtt.ingest import Collector


def main() -> None:
    url, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    collector = Collector(load_config(path), make_engine(url), get_tables())
    collector.run(seconds, on_connected=lambda: print("connected", flush=True))


if __name__ == "__main__":
    main()
