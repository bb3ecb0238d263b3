"""Which partitions and files a merge takes, how they are grouped, how schemas unify,
and which files a reader honouring the partition state reads."""

from datetime import date

import pytest

from shopfloor.lake.plan import (
    group_partitions,
    is_closed,
    pack,
    partition_day,
    plan_partition,
)
from shopfloor.lake.protocol import PartitionState, is_visible, state_commit, state_prune
from shopfloor.lake.schema import cast_expression, unify, widen
from shopfloor.storage import ObjectInfo

MB = 2**20
P = "datalog_v2/hiveperiod=2026-01-05/dstrct_code=BRCB"
T = "0123456789abcdef0123456789abcdef"


def files(*sizes: int, folder: str = P) -> list[ObjectInfo]:
    return [ObjectInfo(f"{folder}/part-{i:03d}.parquet", s) for i, s in enumerate(sizes)]


@pytest.mark.parametrize(("partition", "day"), [
    (P, date(2026, 1, 5)),
    ("sensor_data/date=2026-02-01", date(2026, 2, 1)),
    ("sensor_data/tag=line1_temp/date=2026-02-01", date(2026, 2, 1)),
    ("sensor_data/tag=x", None),
    ("datalog_v2/hiveperiod=__HIVE_DEFAULT_PARTITION__/dstrct_code=X", None),
])
def test_the_day_of_a_partition_comes_from_its_path(partition, day):
    assert partition_day(partition) == day


def test_only_partitions_older_than_the_grace_are_closed():
    parts = [f"d/hiveperiod=2026-01-{d:02d}/dstrct_code=A" for d in (10, 16, 17, 20)]
    today = date(2026, 1, 20)
    assert [p for p in parts if is_closed(p, today, 3)] == parts[:2]
    assert not is_closed("d/other", today, 3)  # a path without a day is never closed


def test_partitions_are_leaf_folders_of_parquet_files_outside_hidden_folders():
    objs = [*files(1, 2), ObjectInfo(f"{P}/_lake_state.json", 10),
            ObjectInfo("_compaction/datalog_v2/staging/x/a.parquet", 1),
            ObjectInfo(f"{P}/_tmp/a.parquet", 1), ObjectInfo(f"{P}/.a.parquet.crc", 1)]
    assert {k: [o.key for o in v] for k, v in group_partitions(objs).items()} == {
        P: [f"{P}/part-000.parquet", f"{P}/part-001.parquet"]}


def test_small_files_are_packed_in_key_order_within_the_target():
    groups = pack(files(40 * MB, 40 * MB, 40 * MB, 10 * MB, 100 * MB, 5 * MB), 128 * MB)
    assert [[o.size // MB for o in g] for g in groups] == [[40, 40, 40], [10, 5]]


def test_a_group_of_one_file_is_not_rewritten():
    assert pack(files(60 * MB, 60 * MB, 60 * MB), 100 * MB) == []


@pytest.mark.parametrize(("sizes", "min_files", "merged"), [
    ((200 * MB,), 2, False),          # one good file
    ((1 * MB,), 2, False),            # one small straggler
    ((1 * MB, 1 * MB), 2, True),
    ((1 * MB, 1 * MB, 1 * MB), 4, False),
    ((100 * MB, 1 * MB, 1 * MB), 2, True),  # the good file stays out of the merge
])
def test_a_partition_is_merged_only_with_enough_small_files(sizes, min_files, merged):
    plan = plan_partition(P, files(*sizes), 128 * MB, min_files)
    assert (plan is not None) == merged
    if plan:
        assert all(o.size < 64 * MB for g in plan.groups for o in g)


def test_types_widen_when_compatible_and_turn_to_text_otherwise():
    assert widen("INTEGER", "BIGINT") == ("BIGINT", "widened")
    assert widen("BIGINT", "DOUBLE") == ("DOUBLE", "widened")
    assert widen("NULL", "VARCHAR") == ("VARCHAR", None)
    assert widen("BIGINT", "VARCHAR") == ("VARCHAR", "cast to text")
    assert widen("VARCHAR", "STRUCT(k INTEGER)") == ("VARCHAR", "cast to text")


def test_the_unified_schema_says_what_it_did():
    u = unify([{"a": "INTEGER", "b": "BIGINT"}, {"a": "DOUBLE", "b": "VARCHAR", "c": "JSON"}])
    assert u.columns == {"a": "DOUBLE", "b": "VARCHAR", "c": "JSON"}
    assert u.changes == {"a": "widened (DOUBLE, INTEGER -> DOUBLE)",
                         "b": "cast to text (BIGINT, VARCHAR -> VARCHAR)",
                         "c": "missing in 1 of 2 schemas (NULL there)"}


def test_column_names_from_files_are_quoted_and_nested_values_become_json_text():
    assert cast_expression('we"ird', None, "BIGINT") == 'CAST(NULL AS BIGINT) AS "we""ird"'
    assert cast_expression("s", "STRUCT(k INTEGER)", "VARCHAR") == (
        'CAST(to_json("s") AS VARCHAR) AS "s"')


def test_merged_files_are_visible_only_once_committed_and_inputs_not_after():
    inp, out = f"{P}/part-1.parquet", f"{P}/merged-{T}-0.parquet"
    empty = PartitionState()
    assert is_visible(inp, empty) and not is_visible(out, empty)
    committed = state_commit(empty, T, [inp])
    assert not is_visible(inp, committed) and is_visible(out, committed)
    assert committed.generation == 1
    pruned = state_prune(committed, [out])
    assert pruned.retired == frozenset() and pruned.committed == {T}
    assert state_prune(pruned, []).committed == frozenset()
    assert not is_visible(f"{P}/_lake_state.json", committed)


def test_merged_extraction_days_are_sorted_by_tag_and_time_when_tag_is_a_column():
    from shopfloor.lake.merge import sort_columns
    from shopfloor.lake.schema import UnifiedSchema

    date_layout = UnifiedSchema({"tagid": "INTEGER", "ts": "TIMESTAMP WITH TIME ZONE",
                                 "value": "DOUBLE", "tag": "VARCHAR"})
    assert sort_columns(date_layout) == ("tag", "ts")
    tag_layout = UnifiedSchema({"tagid": "INTEGER", "ts": "TIMESTAMP WITH TIME ZONE"})
    assert sort_columns(tag_layout) == ("tagid", "ts")
