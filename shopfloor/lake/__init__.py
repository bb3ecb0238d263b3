"""Lake maintenance: merging the small Parquet files of closed partitions, and the reader
protocol that sees every row exactly once while a merge swaps files (docs/lake_maintenance.md)."""
