"""Planning the reads of a window from Ignition's sqlth_partitions, and the re-check's
day comparison (pure functions)."""

from datetime import date

from shopfloor.historian.partitions import Partition, plan_reads
from shopfloor.historian.plan import MonthSlice, TableRead, day_ranges, epoch_ms, plan_months
from shopfloor.historian.recheck import (
    DayCheck,
    compare_days,
    day_slices,
    recheck_window,
)
from shopfloor.historian.tags import Tag, partition_key, tags_of_driver

PATTERN = "sqlt_data_1_{yyyy}_{mm}"
H = 3_600_000


def ms(y: int, m: int, d: int, hours: int = 0) -> int:
    return epoch_ms(date(y, m, d)) + hours * H


def test_non_monthly_partitions_of_two_drivers_are_clipped_to_each_month():
    months = plan_months(date(2026, 1, 30), date(2026, 2, 2), PATTERN)
    parts = [  # driver 1 cuts its tables at noon on irregular days; driver 2 weekly
        Partition("d1_a", 1, ms(2026, 1, 20), ms(2026, 1, 31, 12)),
        Partition("d1_b", 1, ms(2026, 1, 31, 12), ms(2026, 2, 10)),
        Partition("d2_w", 2, ms(2026, 1, 26), ms(2026, 2, 2)),
        Partition("d2_x", 2, ms(2026, 2, 2), ms(2026, 2, 9)),
        Partition("old", 1, ms(2025, 12, 1), ms(2026, 1, 1)),  # outside the window
    ]
    jan, feb = plan_reads(months, parts)
    assert jan.reads == (
        TableRead("d1_a", ms(2026, 1, 30), ms(2026, 1, 31, 12), 1),
        TableRead("d2_w", ms(2026, 1, 30), ms(2026, 2, 1), 2),
        TableRead("d1_b", ms(2026, 1, 31, 12), ms(2026, 2, 1), 1),
    )
    assert feb.reads == (
        TableRead("d1_b", ms(2026, 2, 1), ms(2026, 2, 3), 1),
        TableRead("d2_w", ms(2026, 2, 1), ms(2026, 2, 2), 2),
        TableRead("d2_x", ms(2026, 2, 2), ms(2026, 2, 3), 2),
    )
    assert jan.table == "d1_a,d2_w,d1_b" and jan.month == "2026-01"
    assert (jan.start_ms, feb.end_ms) == (ms(2026, 1, 30), ms(2026, 2, 3))  # slices unchanged


def test_a_table_listed_twice_is_read_once_over_the_hull_of_its_spans():
    [month] = plan_months(date(2026, 3, 1), date(2026, 3, 31), PATTERN)
    parts = [Partition("t", 1, ms(2026, 3, 1), ms(2026, 3, 10)),
             Partition("t", 1, ms(2026, 3, 1), ms(2026, 3, 10)),  # a duplicate row
             Partition("t", 1, ms(2026, 3, 8), ms(2026, 3, 20))]  # overlapping
    assert plan_reads([month], parts)[0].reads == (
        TableRead("t", ms(2026, 3, 1), ms(2026, 3, 20), 1),)


def test_a_month_no_partition_covers_gets_no_reads():
    months = plan_months(date(2026, 1, 1), date(2026, 2, 28), PATTERN)
    jan, feb = plan_reads(months, [Partition("t", 1, ms(2026, 2, 1), ms(2026, 3, 1))])
    assert jan.reads == () and jan.table == "sqlt_data_1_2026_01"
    assert feb.reads and feb.table_reads == feb.reads
    # without reads a slice reads its pattern table over the whole slice
    assert jan.table_reads == (TableRead("sqlt_data_1_2026_01", jan.start_ms, jan.end_ms),)


def test_day_ranges_of_a_read_starting_mid_day_stay_day_aligned_inside_it():
    assert day_ranges(ms(2026, 1, 1, 12), ms(2026, 1, 4, 6), 8) == [
        (ms(2026, 1, 1, 12), ms(2026, 1, 2)), (ms(2026, 1, 2), ms(2026, 1, 3)),
        (ms(2026, 1, 3), ms(2026, 1, 4)), (ms(2026, 1, 4), ms(2026, 1, 4, 6))]
    assert day_ranges(ms(2026, 1, 1, 12), ms(2026, 1, 4, 6), 2) == [
        (ms(2026, 1, 1, 12), ms(2026, 1, 3)), (ms(2026, 1, 3), ms(2026, 1, 4, 6))]


def test_a_table_of_a_driver_holds_its_tags_and_those_whose_driver_is_unknown():
    tags = [Tag(1, "a", 1), Tag(2, "b", 2), Tag(3, "a", 2), Tag(4, "c", None)]
    assert [t.id for t in tags_of_driver(tags, 2)] == [2, 3, 4]
    assert [t.id for t in tags_of_driver(tags, None)] == [1, 2, 3, 4]


def test_the_recheck_window_is_the_days_before_start():
    assert recheck_window(date(2026, 3, 1), 3) == (date(2026, 2, 26), date(2026, 2, 28))
    assert recheck_window(date(2026, 3, 1), 0) is None


def test_compare_days_finds_the_days_whose_rows_per_tag_differ():
    day = epoch_ms(date(2026, 2, 1)) // 86_400_000
    source = {("line1/a", day): 24, ("line1/a", day + 1): 25, ("line1/b", day + 1): 24,
              ("line1/b", day + 2): 3}
    lake = {(partition_key("line1/a"), "2026-02-01"): 24,
            (partition_key("line1/a"), "2026-02-02"): 24,  # one late row since
            (partition_key("line1/b"), "2026-02-02"): 24,
            (partition_key("line1/x"), "2026-02-03"): 5}  # gone from the source
    checks = compare_days(["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"],
                          source, lake)
    assert checks == [DayCheck("2026-02-01", 24, 24, 0), DayCheck("2026-02-02", 49, 48, 1),
                      DayCheck("2026-02-03", 3, 5, 2), DayCheck("2026-02-04", 0, 0, 0)]
    assert [c.date for c in checks if c.changed] == ["2026-02-02", "2026-02-03"]


def test_day_slices_cut_one_day_with_its_reads_from_the_planned_months():
    months = plan_months(date(2026, 1, 30), date(2026, 2, 2), PATTERN)
    planned = plan_reads(months, [Partition("p1", 1, ms(2026, 1, 1), ms(2026, 1, 31, 6)),
                                  Partition("p2", 1, ms(2026, 1, 31, 6), ms(2026, 3, 1))])
    [d31, d02] = day_slices(planned, ["2026-01-31", "2026-02-02"])
    assert (d31.month, d31.start_ms, d31.end_ms) == ("2026-01-31", ms(2026, 1, 31),
                                                     ms(2026, 2, 1))
    assert d31.reads == (TableRead("p1", ms(2026, 1, 31), ms(2026, 1, 31, 6), 1),
                         TableRead("p2", ms(2026, 1, 31, 6), ms(2026, 2, 1), 1))
    assert d31.dates == ["2026-01-31"]
    assert d02.reads == (TableRead("p2", ms(2026, 2, 2), ms(2026, 2, 3), 1),)
    # pattern slices keep their table and get no reads
    [plain] = day_slices(months, ["2026-02-01"])
    assert plain.table == "sqlt_data_1_2026_02" and plain.reads == ()
    assert plain.dates == ["2026-02-01"]


def test_month_slice_without_reads_keeps_its_old_meaning():
    s = MonthSlice("t", "2026-01", ms(2026, 1, 1), ms(2026, 1, 3))
    assert s.day_ranges(8) == [(ms(2026, 1, 1), ms(2026, 1, 2)), (ms(2026, 1, 2), ms(2026, 1, 3))]


def _compiled(dialect_name: str) -> str:
    from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

    from shopfloor.db.schema import get_tables
    from shopfloor.historian.source import tag_day_counts

    dialect = {"mssql": mssql, "mysql": mysql, "postgresql": postgresql,
               "sqlite": sqlite}[dialect_name].dialect()
    stmt = tag_day_counts(get_tables(None), TableRead("hist_d1_a", 0, 86_400_000, 1),
                          ["line1/%"], [192], drivers=True)
    return " ".join(str(stmt.compile(dialect=dialect)).split())


def test_the_recheck_group_by_divides_whole_numbers_on_every_dialect():
    # SQL Server and PostgreSQL divide integers as integers; MySQL floors its decimal result
    assert "hist_d1_a.t_stamp / " in _compiled("mssql")
    assert "hist_d1_a.t_stamp / " in _compiled("postgresql")
    assert "FLOOR(hist_d1_a.t_stamp / " in _compiled("mysql")
    for name in ("mssql", "postgresql", "mysql", "sqlite"):
        sql = _compiled(name)
        # grouped by the subquery's columns; the driver's tags through sqlth_scinfo
        assert "GROUP BY r.tagpath, r.day" in sql
        assert "sqlth_scinfo" in sql and "te_drv" in sql
        assert "line1/%" not in sql  # patterns are bound parameters


def test_catalog_tags_and_day_counts_on_sqlite(tmp_path):
    from sqlalchemy import create_engine, insert

    from shopfloor.db.schema import get_tables, historian_data_table
    from shopfloor.historian.partitions import discover
    from shopfloor.historian.source import count_by_tag_day, count_filtered
    from shopfloor.historian.tags import load_tags
    from tests.historian_catalog import seed_catalog

    engine = create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    tables = get_tables(None)
    tables.sqlth_te.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.sqlth_te), [
            {"id": 1, "tagpath": "a/x"}, {"id": 2, "tagpath": "a/x"}, {"id": 3, "tagpath": "b"}])
    seed_catalog(engine, tables, [Partition("p1", 1, ms(2026, 1, 1), ms(2026, 1, 2, 12)),
                                  Partition("p2", 2, ms(2026, 1, 1), ms(2026, 2, 1))],
                 {10: 1, 20: 2}, {1: 10, 2: 20, 3: 20})
    rows = {"p1": [(1, ms(2026, 1, 1, 1)), (1, ms(2026, 1, 2, 1))],
            "p2": [(2, ms(2026, 1, 1, 5)), (2, ms(2026, 1, 2, 5)), (3, ms(2026, 1, 1, 6)),
                   (1, ms(2026, 1, 1, 7))]}  # tag 1 in driver 2's table: not its driver
    with engine.begin() as conn:
        for name, items in rows.items():
            data = historian_data_table(tables, name)
            data.create(conn)
            conn.execute(insert(data), [{"tagid": t, "t_stamp": ts, "dataintegrity": 192}
                                        for t, ts in items])
    with engine.connect() as conn:
        assert load_tags(conn, tables, ["a/%"], drivers=True) == [
            Tag(1, "a/x", 1), Tag(2, "a/x", 2)]
        months = plan_months(date(2026, 1, 1), date(2026, 1, 2), PATTERN)
        [month], uncovered = discover(conn, tables, months)
        assert uncovered == [] and [r.table for r in month.reads] == ["p1", "p2"]
        counts = count_by_tag_day(conn, tables, month, ["a/%"], [192], drivers=True)
        day = ms(2026, 1, 1) // 86_400_000
        assert counts == {("a/x", day): 2, ("a/x", day + 1): 2}
        assert count_filtered(conn, tables, month, ["a/%"], [192], drivers=True) == 4
        assert count_filtered(conn, tables, month, ["a/%"], [192], drivers=False) == 5
