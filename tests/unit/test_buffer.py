"""The collector's sample buffer: cursors, pruning, limits, a torn tail, a damaged record."""

import shutil
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from shopfloor.buffer.status import BacklogReporter, WarehouseWriter, backlog_rows, buffer_rows
from shopfloor.buffer.store import (
    Backlog,
    Limits,
    SampleBuffer,
    alarm_every_seconds,
    alert_age_seconds,
    buffer_path,
)
from shopfloor.buffer.wal import inspect_wal
from shopfloor.db.schema import get_tables
from shopfloor.errors import ShopfloorError, UserError
from shopfloor.modbus.buffered import ForwardLoop, ForwardStats


def copy_file(path: Path, to: Path) -> None:
    """Copy a buffer file and its WAL as they are on disk (what a crash would leave)."""
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            shutil.copyfile(src, f"{to}{suffix}")

WH, LAND = "warehouse:db", "landing:raw"


def _buffer(tmp_path: Path, **kw) -> SampleBuffer:
    kw.setdefault("clock", lambda: 10.0)  # sample times below are ms after the epoch
    buf = SampleBuffer(tmp_path / "c.sqlite3", **kw)
    buf.put_device("dev", "{}")
    buf.register_sink(WH, "dev")
    buf.register_sink(LAND, "dev")
    return buf


def _append(buf: SampleBuffer, first_ms: int, n: int, body: bytes = b"x" * 16) -> int:
    return buf.append("dev", "run-1", [(first_ms + i, 0, body, None) for i in range(n)])


def test_each_sink_forwards_on_its_own_cursor_and_forwarded_samples_are_deleted(tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 5)
    assert [r.capture_ms for r in buf.pending(WH, "dev")] == [1000, 1001, 1002, 1003, 1004]
    buf.advance(WH, "dev", buf.pending(WH, "dev")[2].seq)
    assert [r.capture_ms for r in buf.pending(WH, "dev")] == [1003, 1004]
    assert len(buf.pending(LAND, "dev")) == 5  # the landing is where it was
    assert buf.count() == 5  # nothing passed by both sinks yet
    buf.advance(LAND, "dev", buf.pending(LAND, "dev")[3].seq)
    assert buf.count() == 2  # the first three are forwarded to both: gone
    assert (buf.backlog(WH).samples, buf.backlog(LAND).samples) == (2, 1)
    assert buf.backlog(WH).oldest_ms == 1003


def test_cursors_survive_a_reopen(tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 3)
    buf.advance(WH, "dev", buf.pending(WH, "dev")[0].seq)
    buf.close()
    again = SampleBuffer(tmp_path / "c.sqlite3", clock=lambda: 10.0)
    assert [r.capture_ms for r in again.pending(WH, "dev")] == [1001, 1002]
    assert again.recovered is None


def test_a_new_sink_starts_after_what_is_already_buffered(tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 3)
    buf.register_sink("landing:other", "dev")
    assert buf.pending("landing:other", "dev") == []
    _append(buf, 2000, 1)
    assert [r.capture_ms for r in buf.pending("landing:other", "dev")] == [2000]


def test_sequence_numbers_only_grow_even_after_deletes(tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 2)
    last = buf.pending(WH, "dev")[-1].seq
    for sink in (WH, LAND):
        buf.advance(sink, "dev", last)
    assert buf.count() == 0
    _append(buf, 3000, 1)
    assert buf.pending(WH, "dev")[0].seq > last


def test_full_buffer_drops_the_oldest_and_counts_every_dropped_sample(tmp_path):
    buf = _buffer(tmp_path, limits=Limits(max_bytes=256 * 1024))
    dropped = sum(_append(buf, 1000 + 10 * i, 10, body=b"y" * 1000) for i in range(100))
    assert dropped > 0
    kept = buf.pending(WH, "dev", limit=10_000)
    assert len(kept) + dropped == 1000  # every sample is either kept or counted
    assert buf.dropped() == {"dev": dropped}
    assert kept[0].capture_ms == 1000 + dropped and kept[-1].capture_ms == 1999  # oldest gone
    assert buf.fill_ratio() <= 1.0


def test_samples_older_than_the_age_limit_are_dropped_and_counted(tmp_path):
    now = [1_000.0]
    buf = _buffer(tmp_path, limits=Limits(max_age_seconds=60), clock=lambda: now[0])
    _append(buf, 950_000, 3)  # 50 s old
    now[0] = 1_030.0  # 80 s old now
    assert _append(buf, 1_029_000, 1) == 3
    assert [r.capture_ms for r in buf.pending(WH, "dev")] == [1_029_000]
    assert buf.dropped() == {"dev": 3}


def test_a_torn_wal_tail_loses_only_the_torn_record_and_is_quarantined(tmp_path):
    buf = _buffer(tmp_path)
    buf._db.execute("PRAGMA wal_autocheckpoint=0")  # everything stays in the log
    for i in range(5):
        _append(buf, 1000 + i, 1)  # one transaction per sample, as capture writes them
    crash = tmp_path / "crash"
    crash.mkdir()
    copy_file(buf.path, crash / "c.sqlite3")  # the files as a crash leaves them
    wal = crash / "c.sqlite3-wal"
    wal.write_bytes(wal.read_bytes()[:-100])  # the last append's last frame is torn
    tail = inspect_wal(wal)
    assert tail is not None and "torn" in tail.reason

    recovered = SampleBuffer(crash / "c.sqlite3", clock=lambda: 10.0)
    assert [r.capture_ms for r in recovered.pending(WH, "dev")] == [1000, 1001, 1002, 1003]
    assert recovered.recovered is not None and "quarantined" in recovered.recovered
    (reason,) = (crash / "quarantine").glob("*.reason")
    assert "torn" in reason.read_text()
    (torn,) = (crash / "quarantine").glob("*.wal-tail")
    assert torn.stat().st_size == tail.torn_bytes > 0


def test_a_clean_close_leaves_nothing_to_quarantine(tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 3)
    buf.close()
    assert SampleBuffer(tmp_path / "c.sqlite3").recovered is None
    assert not (tmp_path / "quarantine").exists()


def test_a_record_damaged_on_disk_is_quarantined_with_its_reason_and_the_rest_forwarded(
        tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 3)
    bad = buf.pending(WH, "dev")[1].seq
    raw = sqlite3.connect(buf.path)
    raw.execute("UPDATE sample SET body = ? WHERE seq = ?", (b"garbage", bad))
    raw.commit()
    raw.close()
    assert [r.capture_ms for r in buf.pending(WH, "dev")] == [1000, 1002]
    ((seq, reason),) = buf.quarantined()
    assert seq == bad and "checksum mismatch" in reason


@pytest.mark.parametrize("name", ["", "../x", "a b"])
def test_collector_names_cannot_leave_the_buffer_folder(tmp_path, name):
    with pytest.raises(ShopfloorError, match="collector"):
        buffer_path(tmp_path, name)


def test_samples_keep_the_configuration_they_were_taken_under(tmp_path):
    buf = _buffer(tmp_path)
    _append(buf, 1000, 1)
    buf.put_device("dev", '{"map": 2}')  # the register map changed between runs
    _append(buf, 2000, 1)
    old, new = buf.pending(WH, "dev")
    assert (buf.config(old.cfg), buf.config(new.cfg)) == ("{}", '{"map": 2}')
    buf.put_device("dev", "{}")  # back to the first: the same version again
    _append(buf, 3000, 1)
    assert buf.pending(WH, "dev")[-1].cfg == old.cfg


def test_a_run_is_open_until_it_ends_or_its_heartbeat_stops(tmp_path):
    now = [100.0]
    buf = _buffer(tmp_path, clock=lambda: now[0])
    buf.start_run("r1")
    assert buf.run_open("r1") and not buf.run_open("never-started")
    now[0] += 10
    buf.heartbeat("r1")
    now[0] += 10
    assert buf.run_open("r1")  # 10 s since its last beat
    now[0] += 10
    assert not buf.run_open("r1")  # silent for 20 s: killed or crashed
    buf.start_run("r2")
    buf.end_run("r2")
    assert not buf.run_open("r2")


def test_an_ending_run_waits_for_a_killed_runs_samples_not_for_a_live_ones(tmp_path):
    now = [100.0]
    buf = _buffer(tmp_path, clock=lambda: now[0])
    for run in ("own", "live", "killed", "gone", "ended"):
        buf.start_run(run)
    now[0] = 85.0  # "gone" last appended 20 s before the end
    buf.append("dev", "gone", [(1, 0, b"g", None)])
    now[0] = 100.0
    for run, n in (("own", 1), ("live", 2), ("killed", 3), ("ended", 4)):
        buf.append("dev", run, [(10 * n + i, 0, b"x", None) for i in range(n)])
    buf.end_run("ended")
    now[0] = 105.0  # 5 s later: "killed" missed two beats, "live" beat just now
    buf.heartbeat("live")
    buf.heartbeat("own")
    # settled: own 1 + ended 4 + gone 1 (silent 20 s); undecided: killed 3
    assert buf.left_behind(WH, "own") == (6, 3)


def test_the_alarm_settings_come_from_the_environment(monkeypatch):
    assert (alert_age_seconds(), alarm_every_seconds()) == (600.0, 60.0)
    monkeypatch.setenv("SHOPFLOOR_BUFFER_ALERT_AGE_SECONDS", "15")
    monkeypatch.setenv("SHOPFLOOR_BUFFER_ALARM_EVERY_SECONDS", "5")
    assert (alert_age_seconds(), alarm_every_seconds()) == (15.0, 5.0)
    monkeypatch.setenv("SHOPFLOOR_BUFFER_ALARM_EVERY_SECONDS", "0")
    with pytest.raises(UserError, match="SHOPFLOOR_BUFFER_ALARM_EVERY_SECONDS"):
        alarm_every_seconds()


def test_the_backlog_rows_are_one_per_sink_of_the_buffer_with_its_oldest_sample(tmp_path):
    buf = _buffer(tmp_path, limits=Limits(max_bytes=10 * 1024**2))
    _append(buf, 5000, 4)
    buf.advance(WH, "dev", buf.pending(WH, "dev")[-1].seq)  # the warehouse has it all
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    rows = {r["sink"]: r for r in buffer_rows(buf, "line-3", now)}
    assert set(rows) == {WH, LAND}
    assert rows[LAND]["backlog_samples"] == 4
    assert rows[LAND]["oldest_sample_at"] == datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert (rows[WH]["backlog_samples"], rows[WH]["oldest_sample_at"]) == (0, None)
    for row in rows.values():
        assert (row["collector"], row["reported_at"], row["dropped_samples"]) == (
            "line-3", now, 0)
        assert row["buffer_fill_pct"] == round(100 * buf.fill_ratio(), 2) > 0


def test_backlog_rows_carry_the_collectors_drops_and_fill_on_each_sink():
    now = datetime(2026, 12, 6, tzinfo=UTC)
    rows = backlog_rows("c1", [Backlog("warehouse:db", 7, 1_000), Backlog("landing:s3", 0, None)],
                        0.8125, 12, now)
    assert [(r["sink"], r["backlog_samples"], r["dropped_samples"], r["buffer_fill_pct"])
            for r in rows] == [("warehouse:db", 7, 12, 81.25), ("landing:s3", 0, 12, 81.25)]
    assert rows[0]["oldest_sample_at"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_the_warehouse_writer_creates_the_table_and_upserts_one_row_per_collector_and_sink(
        tmp_path):
    from shopfloor.db.engine import make_engine

    engine = make_engine(f"sqlite+pysqlite:///{tmp_path / 'wh.db'}")  # no table yet
    table = get_tables().collector_backlog
    write = WarehouseWriter(engine, table)
    now = datetime(2026, 12, 6, tzinfo=UTC)
    write(backlog_rows("c1", [Backlog(WH, 7, 1000), Backlog(LAND, 3, 2000)], 0.5, 0, now))
    write(backlog_rows("c1", [Backlog(WH, 0, None)], 0.25, 2, now + timedelta(seconds=1)))
    with engine.connect() as conn:
        got = conn.execute(select(table.c.sink, table.c.backlog_samples,
                                  table.c.oldest_sample_at, table.c.dropped_samples,
                                  table.c.reported_at).order_by(table.c.sink)).all()
    engine.dispose()
    assert [tuple(r) for r in got] == [
        (LAND, 3, datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC), 0, now),
        (WH, 0, None, 2, now + timedelta(seconds=1))]


def test_a_failing_report_is_skipped_logged_once_per_outage_and_never_raised():
    warnings: list[str] = []
    written: list[list] = []
    down = [True]

    def write(rows: list) -> None:
        if down[0]:
            raise ConnectionRefusedError("warehouse down")
        written.append(rows)

    reporter = BacklogReporter(lambda: [{"sink": "s"}], write, warnings.append)
    assert [reporter.report_now() for _ in range(3)] == [False] * 3
    assert warnings == ["ConnectionRefusedError: warehouse down"]  # once, not three times
    down[0] = False
    assert reporter.report_now() and written == [[{"sink": "s"}]]
    down[0] = True
    assert not reporter.report_now()
    assert len(warnings) == 2  # a new outage is told again
    assert (reporter.reports, reporter.failures) == (1, 4)


def test_the_reporter_thread_reports_on_request_coalesced_and_once_more_on_close():
    written: list[int] = []
    reporter = BacklogReporter(lambda: [{"n": len(written)}], lambda rows: written.append(1),
                               lambda e: None, min_interval=60).start()
    for _ in range(50):  # passes in quick succession: one report, then one per interval
        reporter.request()
    deadline = time.monotonic() + 60  # a bound on a loaded machine, not a measurement
    while not written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(written) == 1
    reporter.request()
    assert reporter.close(timeout=5)  # the last report, after the thread stopped
    assert len(written) == 2  # the stop ended the interval's wait: no third report
    assert not reporter._thread.is_alive()


def test_a_forward_loop_calls_after_pass_after_each_pass_even_a_failed_one(tmp_path):
    buf = _buffer(tmp_path)
    calls: list[int] = []

    class Failing:
        name, buffer, stats = WH, buf, ForwardStats(WH)

        def forward_once(self) -> int:
            raise OSError("sink down")

    def after() -> None:
        calls.append(1)
        raise RuntimeError("a report hook that fails is ignored")

    loop = ForwardLoop(Failing(), after_pass=after)  # type: ignore[arg-type]
    assert loop._attempt() is None and loop._attempt() is None
    assert len(calls) == 2 and loop.forwarder.stats.errors == 2


def test_a_last_report_that_hangs_does_not_hold_up_the_runs_end(tmp_path):
    release = threading.Event()
    reporter = BacklogReporter(lambda: [], lambda rows: release.wait(30), lambda e: None).start()
    started = time.monotonic()
    assert reporter.close(timeout=0.3) is False  # the warehouse did not answer in time
    assert time.monotonic() - started < 5
    release.set()
    buf = _buffer(tmp_path)
    buf.close()
    with pytest.raises(ShopfloorError, match="closed"):  # a late report reads nothing
        buf.state()
