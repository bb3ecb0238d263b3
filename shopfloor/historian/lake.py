"""The extraction's output layout in the lake, and the two storage operations it needs.

Layout: ``<output_prefix>/tag=<partition key>/date=<YYYY-MM-DD>/<file>.parquet``
(Hive-style, so Spark, DuckDB and pyarrow read the partition columns back).
"""

import re
from collections.abc import Iterable

from shopfloor.storage import StorageLocation

_PARTITION = re.compile(r"(?:^|/)tag=([^/]+)/date=(\d{4}-\d{2}-\d{2})/[^/]+$")


def partition_of(key: str) -> tuple[str, str] | None:
    """``(tag, date)`` of an object key inside the output prefix, or ``None``."""
    m = _PARTITION.search(key)
    return (m.group(1), m.group(2)) if m else None


def is_data_file(key: str) -> bool:
    """Parquet data, not Hadoop's hidden ``.crc`` checksums or ``_SUCCESS`` markers."""
    name = key.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def window_files(storage: StorageLocation, output_prefix: str,
                 tag_keys: Iterable[str], dates: Iterable[str]) -> list[str]:
    """Keys (relative to the location) of every file in the given partitions.

    One listing of the prefix, filtered here: far fewer requests on S3 than one
    listing per ``(tag, date)`` folder.
    """
    wanted_tags, wanted_dates = set(tag_keys), set(dates)
    out = []
    for obj in storage.list_objects(output_prefix):
        part = partition_of(obj.key)
        if part and part[0] in wanted_tags and part[1] in wanted_dates:
            out.append(obj.key)
    return out


def delete_window(storage: StorageLocation, output_prefix: str,
                  tag_keys: Iterable[str], dates: Iterable[str]) -> int:
    """Delete the partitions of these tags and dates (and nothing else).

    Returns how many Parquet data files were deleted (checksums and markers go too).
    """
    keys = window_files(storage, output_prefix, tag_keys, dates)
    storage.delete(keys)
    return sum(is_data_file(k) for k in keys)


def count_rows(storage: StorageLocation, keys: list[str]) -> int:
    """Rows in these Parquet files, read back from storage (footers only)."""
    if not keys:
        return 0
    import pyarrow.dataset as ds

    paths = [storage.path(k) for k in keys if is_data_file(k)]
    if not paths:
        return 0
    return ds.dataset(paths, filesystem=storage.arrow_filesystem(),
                      format="parquet").count_rows()


def rows_by_partition(storage: StorageLocation, output_prefix: str,
                      tag_keys: Iterable[str], dates: Iterable[str]) -> dict[tuple[str, str], int]:
    """``(tag key, date) -> rows`` of the output in these partitions, from the Parquet
    footers (one listing, then one footer read per file; no data pages)."""
    import pyarrow.parquet as pq

    out: dict[tuple[str, str], int] = {}
    fs = storage.arrow_filesystem()
    for key in window_files(storage, output_prefix, tag_keys, dates):
        part = partition_of(key)
        if part and is_data_file(key):
            with fs.open_input_file(storage.path(key)) as f:
                rows = pq.ParquetFile(f).metadata.num_rows
            out[part] = out.get(part, 0) + rows
    return out
