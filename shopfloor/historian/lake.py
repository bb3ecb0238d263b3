"""The extraction's output layouts in the lake, and the storage operations they need.

Two layouts, both Hive-style (Spark, DuckDB and pyarrow read the partition columns back):

- ``date`` (the default): ``<output_prefix>/date=<YYYY-MM-DD>/<file>.parquet``, one file per
  day up to the target size, ``tag`` a column; rows sorted by ``(tag, ts)`` in small row
  groups, so a reader of one tag skips most of a file by the row groups' min/max.
- ``tag`` (the seed's): ``<output_prefix>/tag=<partition key>/date=<YYYY-MM-DD>/<file>.parquet``,
  one folder per tag and day: a file per tag-day, tiny at historian densities.

One output prefix holds one layout: a run refuses a prefix written in the other one.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shopfloor.errors import ShopfloorError, UserError
from shopfloor.lake.plan import STATE_NAME
from shopfloor.lake.protocol import PartitionState, is_visible, read_state
from shopfloor.storage import StorageLocation

TAG, DATE = "tag", "date"
LAYOUTS = (DATE, TAG)
# Assumed Parquet bytes per row of the date layout (snappy, sorted by tag and ts): a
# noisy 8-byte double, a timestamp, ids and tag dictionary-encoded. An assumption: the
# benchmark's formulaic values compress to 1.5 B/row (benchmarks/README.md).
BYTES_PER_ROW = 16
# Rows per row group of the date layout (the pyarrow writers): ~60 tags of a day at 170
# rows per tag-day, so a one-tag read of a 500-tag day reads about one row group in eight.
ROW_GROUP_ROWS = 10_000
CARRY_NAME = "part-carry"

_TAG_KEY = re.compile(r"^tag=([^/]+)/date=(\d{4}-\d{2}-\d{2})/[^/]+$")
_DATE_KEY = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/[^/]+$")


@dataclass(frozen=True)
class Partition:
    """Where a file lies: its layout, its tag key (``None`` in the date layout), its date."""

    layout: str
    tag: str | None
    date: str


def check_layout(layout: str) -> str:
    """``tag`` or ``date``, else a :class:`ShopfloorError`."""
    if layout not in LAYOUTS:
        raise UserError(f"invalid layout {layout!r}: use one of {list(LAYOUTS)}")
    return layout


def rows_per_file(target_file_mb: int, cap: int | None = None) -> int:
    """Rows per Parquet file for files of about ``target_file_mb`` MiB (from the estimated
    bytes per row), at most ``cap`` when given."""
    rows = max(1, target_file_mb * 2**20 // BYTES_PER_ROW)
    return min(rows, cap) if cap else rows


def partition_of(rel_key: str) -> Partition | None:
    """The partition of a key relative to the output (or staging) folder, or ``None``."""
    m = _TAG_KEY.match(rel_key)
    if m:
        return Partition(TAG, m.group(1), m.group(2))
    m = _DATE_KEY.match(rel_key)
    return Partition(DATE, None, m.group(1)) if m else None


def is_data_file(key: str) -> bool:
    """Parquet data, not Hadoop's hidden ``.crc`` checksums or ``_SUCCESS`` markers."""
    name = key.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def in_window(part: Partition | None, layout: str, tag_keys: set[str],
              dates: set[str]) -> bool:
    """Whether a partition belongs to the window: its date, and in the tag layout its tag."""
    if part is None or part.layout != layout or part.date not in dates:
        return False
    return layout == DATE or part.tag in tag_keys


def window_files(storage: StorageLocation, output_prefix: str, layout: str,
                 tag_keys: Iterable[str], dates: Iterable[str]) -> list[str]:
    """Keys (relative to the location) of every file in the window's partitions: the
    ``tag=/date=`` folders of these tags and dates, or the whole ``date=`` folders.

    One listing of the prefix, filtered here: far fewer requests on S3 than one listing
    per folder. A data file of the other layout anywhere under the prefix is an error
    (readers cannot mix them, and a replace would miss it).
    """
    check_layout(layout)
    wanted_tags, wanted_dates = set(tag_keys), set(dates)
    out = []
    for obj in storage.list_objects(output_prefix):
        part = partition_of(obj.key.removeprefix(output_prefix + "/"))
        if part and part.layout != layout and is_data_file(obj.key):
            raise ShopfloorError(
                f"{output_prefix!r} holds the {part.layout!r} layout ({obj.key}); this run "
                f"writes {layout!r}: pass layout={part.layout!r} or another output_prefix")
        if in_window(part, layout, wanted_tags, wanted_dates):
            out.append(obj.key)
    return out


def visible_files(storage: StorageLocation, keys: list[str]) -> list[str]:
    """The data files of ``keys`` a reader sees: not retired or left uncommitted by a lake
    merge (:mod:`shopfloor.lake.protocol`; each partition's ``_lake_state.json``)."""
    states: dict[str, PartitionState] = {}
    for key in keys:
        folder, _, name = key.rpartition("/")
        if name == STATE_NAME:
            states[folder] = read_state(storage, folder)[0]
    return [k for k in keys if is_data_file(k)
            and is_visible(k, states.get(k.rpartition("/")[0], PartitionState()))]


def count_rows(storage: StorageLocation, keys: list[str]) -> int:
    """Rows in these Parquet files, read back from storage (footers only)."""
    paths = [storage.path(k) for k in keys if is_data_file(k)]
    if not paths:
        return 0
    import pyarrow.dataset as ds

    return ds.dataset(paths, filesystem=storage.arrow_filesystem(),
                      format="parquet").count_rows()


def _not_selected(tag_keys: Iterable[str]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return ~pc.field("tag").isin(pa.array(sorted(set(tag_keys)), pa.string()))


def other_tag_rows(storage: StorageLocation, keys: list[str],
                   tag_keys: Iterable[str]) -> dict[str, int]:
    """``key -> rows`` of date-layout files holding rows of tags outside ``tag_keys``
    (reads the ``tag`` column only); files without such rows are left out."""
    import pyarrow.dataset as ds

    fs, flt, out = storage.arrow_filesystem(), _not_selected(tag_keys), {}
    for key in keys:
        n = ds.dataset(storage.path(key), filesystem=fs, format="parquet").count_rows(
            filter=flt)
        if n:
            out[key] = n
    return out


def carry_other_tags(storage: StorageLocation, sources: list[str], staging: str,
                     tag_keys: Iterable[str], row_group_rows: int = ROW_GROUP_ROWS) -> int:
    """Copy the rows of tags outside ``tag_keys`` from date-layout files ``sources`` into
    ``<staging>/date=<D>/part-carry-<n>.parquet`` (same schema, same order: sorted input
    stays sorted); returns the rows copied.

    A run that selects some tags replaces whole date files: this keeps the other tags'
    rows. Streams in batches, so a large day never sits in memory whole.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, rows = storage.arrow_filesystem(), 0
    tags = pa.array(sorted(set(tag_keys)), pa.string())
    for n, key in enumerate(sources):
        folder = key.rpartition("/")[0].rsplit("/", 1)[-1]  # date=YYYY-MM-DD
        dst = f"{staging}/{folder}/{CARRY_NAME}-{n:05d}.parquet"
        storage.make_parent(dst)
        # The output stream is closed explicitly: a ParquetWriter given a stream does not
        # close it, and S3 uploads the object only on close.
        with (fs.open_input_file(storage.path(key)) as f,
              fs.open_output_stream(storage.path(dst)) as out):
            source = pq.ParquetFile(f)
            writer = pq.ParquetWriter(out, source.schema_arrow, compression="snappy")
            try:
                rows += _copy_filtered(source, writer, tags, row_group_rows)
            finally:
                writer.close()
    return rows


def _copy_filtered(source: Any, writer: Any, tags: Any, row_group_rows: int) -> int:
    """Write the rows of ``source`` whose tag is not in ``tags`` in whole row groups (the
    last one of the file may be short); returns how many."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pending = None
    rows = 0
    for batch in source.iter_batches(batch_size=row_group_rows):
        kept = pa.Table.from_batches([batch.filter(
            pc.invert(pc.is_in(batch.column("tag"), value_set=tags)))])
        rows += kept.num_rows
        pending = kept if pending is None else pa.concat_tables([pending, kept])
        whole = pending.num_rows - pending.num_rows % row_group_rows
        if whole:
            writer.write_table(pending.slice(0, whole), row_group_size=row_group_rows)
            pending = pending.slice(whole)
    if pending is not None and pending.num_rows:
        writer.write_table(pending, row_group_size=row_group_rows)
    return rows


def rows_by_partition(storage: StorageLocation, output_prefix: str, layout: str,
                      tag_keys: Iterable[str], dates: Iterable[str]
                      ) -> dict[tuple[str, str], int]:
    """``(tag key, date) -> rows`` of the window's visible output, for the selected tags.

    Tag layout: one footer read per file (no data pages). Date layout: the ``tag``
    column of each day's files, counted per tag.
    """
    import pyarrow.parquet as pq

    tag_keys = set(tag_keys)
    out: dict[tuple[str, str], int] = {}
    fs = storage.arrow_filesystem()
    keys = visible_files(storage, window_files(storage, output_prefix, layout, tag_keys,
                                               dates))
    for key in keys:
        part = partition_of(key.removeprefix(output_prefix + "/"))
        with fs.open_input_file(storage.path(key)) as f:
            if layout == TAG:
                counts = {part.tag: pq.ParquetFile(f).metadata.num_rows}
            else:
                column = pq.read_table(f, columns=["tag"]).column("tag")
                counts = {v["values"].as_py(): v["counts"].as_py()
                          for v in column.value_counts()}
        for tag, n in counts.items():
            if tag in tag_keys:
                out[(tag, part.date)] = out.get((tag, part.date), 0) + n
    return out
