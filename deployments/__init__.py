"""Deploy/serve helpers, work-pool setup and the ``shopfloor`` CLI."""

import os

# Ephemeral mode starts a private Prefect server; on a busy 2-core machine it can take
# longer than Prefect's 20 s default. Set here, before anything imports prefect: Prefect
# reads its settings once, at import, so setting it in the CLI's main() is too late.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
