"""S3 compaction (seed s3_datalog_processor): key registry, claims, DuckDB JSON -> Parquet.

Plain Python: ``tasks/s3_compaction.py`` and ``flows/s3_compaction.py`` wrap it.
"""
