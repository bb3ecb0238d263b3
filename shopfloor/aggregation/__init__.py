"""Hourly aggregation of ``temperature_raw`` into ``temperature_hourly`` (plain Python, no prefect).

- :mod:`.hours`: local-hour arithmetic in any IANA time zone (DST, fractional offsets).
- :mod:`.windows`: the windows a run aggregates (explicit, last closed hour, late data).
- :mod:`.statements`: the portable GROUP BY pushed down to the source database.
- :mod:`.transfer`: the portable path: aggregate a window on the source, write and
  validate it on the target (source and target may be different databases).
- :mod:`.in_database`: the path chooser, and the staged paths into PostgreSQL/SQLite
  (a temporary table filled in the database or streamed from another, INSERT ... SELECT).
- :mod:`.alerts`: threshold breaches of the hourly rows.
- :mod:`.locations`: master data (locations and thresholds) sync.
"""
