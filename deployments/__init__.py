"""Deploy/serve helpers, work-pool setup and the ``shopfloor`` CLI."""
