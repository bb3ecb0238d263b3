"""The Ignition-style tag historian: month planning, the partition catalog, tag patterns,
lake layout, the late-data re-check, a seeder.

Plain Python (SQLAlchemy Core, pyarrow); Spark lives in :mod:`shopfloor.spark`.
"""
