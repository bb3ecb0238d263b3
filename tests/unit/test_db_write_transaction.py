"""write_transaction on a real SQLite file with two engines: a second writer waits (or
fails) at BEGIN, before it reads anything, not at its first write."""

import threading

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from shopfloor.db.engine import make_engine, write_transaction


@pytest.fixture
def first(sqlite_url: str) -> Engine:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE claim (id INTEGER PRIMARY KEY, owner TEXT)"))
    yield engine
    engine.dispose()


@pytest.fixture
def impatient(sqlite_url: str, first: Engine) -> Engine:
    """A second engine on the same file that gives up on a lock after 100 ms."""
    engine = make_engine(sqlite_url)
    # Registered after make_engine's pragmas, so it overrides their 30 s busy timeout.
    event.listen(engine, "connect",
                 lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=100"))
    yield engine
    engine.dispose()


def _owners(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT owner FROM claim ORDER BY id")).scalars())


def test_a_second_writer_fails_at_begin_before_reading(first, impatient):
    entered = []
    with write_transaction(first) as conn:
        conn.execute(text("INSERT INTO claim (owner) VALUES ('a')"))
        with pytest.raises(OperationalError, match="database is locked"):
            with write_transaction(impatient) as other:
                entered.append(other.execute(text("SELECT count(*) FROM claim")).scalar())
    assert entered == []  # it never got to read, let alone decide from what it read
    assert _owners(first) == ["a"]


def test_an_ordinary_begin_reads_stale_rows_and_fails_only_at_its_write(first, impatient):
    # What write_transaction prevents: the deferred transaction reads, decides, and only
    # its write finds the lock taken.
    read = []
    with write_transaction(first) as conn:
        conn.execute(text("INSERT INTO claim (owner) VALUES ('a')"))
        with pytest.raises(OperationalError, match="database is locked"):
            with impatient.begin() as other:
                read.append(other.execute(text("SELECT count(*) FROM claim")).scalar())
                other.execute(text("INSERT INTO claim (owner) VALUES ('b')"))
    assert read == [0]  # it decided from a table without the first writer's row
    assert _owners(first) == ["a"]


def test_a_waiting_writer_starts_after_the_first_commits_and_sees_its_rows(first,
                                                                         sqlite_url):
    second = make_engine(sqlite_url)  # the 30 s busy timeout: it waits at BEGIN
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with write_transaction(first) as conn:
            conn.execute(text("INSERT INTO claim (owner) VALUES ('a')"))
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold_the_lock)
    thread.start()
    assert holding.wait(5)
    seen = []

    def claim() -> None:
        with write_transaction(second) as conn:
            seen.append(conn.execute(text("SELECT count(*) FROM claim")).scalar())
            conn.execute(text("INSERT INTO claim (owner) VALUES ('b')"))

    waiter = threading.Thread(target=claim)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and seen == []  # still waiting at BEGIN
    release.set()
    thread.join(5)
    waiter.join(5)
    assert seen == [1]  # it read after the first writer's commit
    assert _owners(first) == ["a", "b"]
    second.dispose()


def test_an_error_inside_rolls_the_transaction_back_and_frees_the_lock(first, impatient):
    with pytest.raises(RuntimeError, match="boom"):
        with write_transaction(first) as conn:
            conn.execute(text("INSERT INTO claim (owner) VALUES ('a')"))
            raise RuntimeError("boom")
    with write_transaction(impatient) as conn:  # the lock is free again
        conn.execute(text("INSERT INTO claim (owner) VALUES ('b')"))
    assert _owners(first) == ["b"]
