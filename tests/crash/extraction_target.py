"""The Spark extraction's publish, run without Spark for the crash harness: what the flow
does around its Spark write (roll forward leftovers, stage the month, replace it) on the
flow's own functions; the staging is written with pyarrow in the layout Spark writes
(``tag=<key>/date=<day>/part-*.parquet`` under the month's staging folder)."""

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.historian.publish import new_token
from shopfloor.historian.tags import Tag
from shopfloor.spark import extract
from shopfloor.storage import StorageLocation

OUTPUT = "sensor_data"
TAGS = [Tag(1, "line1/a"), Tag(2, "line1/b")]
OLD = {"tag={a}/date=2026-02-01": [1, 2, 3], "tag={b}/date=2026-02-02": [4, 5],
       "tag={a}/date=2026-01-30": [9]}  # the last is outside the window: never touched
NEW = {"tag={a}/date=2026-02-01": [[10, 11], [12]], "tag={b}/date=2026-02-02": [[13], [14]],
       "tag={a}/date=2026-02-02": [[15, 16, 17]]}


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def job() -> extract.ExtractionJob:
    return extract.ExtractionJob(OUTPUT, TAGS, ["line1/*"], [192], 1, 1000)


def month() -> extract.MonthSlice:
    return extract.MonthSlice("sqlt_data_1_2026_02", "2026-02", _ms("2026-02-01"),
                              _ms("2026-02-03"))


def part(path: str) -> str:
    return path.format(a=TAGS[0].key, b=TAGS[1].key)


def write(storage: StorageLocation, key: str, values: list[int]) -> None:
    storage.make_parent(key)
    pq.write_table(pa.table({"v": pa.array(values, pa.int64())}), storage.path(key))


def write_old(root: str) -> None:
    storage = StorageLocation("local", root)
    for path, values in OLD.items():
        write(storage, f"{OUTPUT}/{part(path)}/part-old-0.parquet", values)


def run(root: str) -> None:
    """One run of the month: roll forward / drop leftovers, stage, replace."""
    storage = StorageLocation("local", root)
    fault = pause_hook_from_env() or (lambda step: None)
    extract.clean_output(storage, job())
    token = new_token("crash")
    staging = extract.month_layout(storage, job(), token).staging_key
    for path, files in NEW.items():
        for n, values in enumerate(files):
            write(storage, f"{staging}/{part(path)}/part-{n:05d}-x.parquet", values)
    storage.write_bytes(f"{staging}/_SUCCESS", b"")
    extract.replace_month(storage, job(), month(), token, fault)
