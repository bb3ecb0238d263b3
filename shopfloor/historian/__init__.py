"""The Ignition-style tag historian: month planning, tag patterns, lake layout, a seeder.

Plain Python (SQLAlchemy Core, pyarrow); Spark lives in :mod:`shopfloor.spark`.
"""
