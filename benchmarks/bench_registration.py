"""Registration cost with a long history: 100,000 objects registered, 100 new ones,
against a fresh registration of only those 100.

    .venv/bin/python benchmarks/bench_registration.py [--devices 50] [--hours 2000]
        [--new-hours 2] [--repeat 5] [--listing {moto,indexed,both}] [--pg-url URL]

S3 is moto's server, started in this process; objects are put through moto's backend
directly (100,000 PUTs over HTTP take minutes) and listed over HTTP as the flow does.
Layout: capture's ``dstrct_code=<code>/<device>/<YYYYMMDDHH>/<run>.json``, one object
per device and hour (``--devices`` x ``--hours``, split over two districts), then
``--new-hours`` new hours per device (100 objects with the defaults).

Times ``shopfloor.compaction.registration.register`` (listing + registry lookups +
insert + listing positions; no Prefect overhead, the same in both cases):

- incremental: registry and ``s3_listing`` hold the 100,000; the 100 new ones are in
  the bucket. Each repetition restores the registry and listing positions first.
- fresh: an empty registry, a bucket holding only the 100 new objects.
- full listing: the same as incremental with ``full_listing=True`` (what every
  registration did before: list the whole history).

``--listing`` chooses how the moto server answers ListObjectsV2 (default ``both``, one
after the other in one run):

- ``moto``: moto's own ``S3Backend.list_objects_v2``, which walks, filters and sorts every
  key of the bucket on every call, so a call costs the bucket's size whatever its
  prefix and StartAfter.
- ``indexed``: the same method replaced, in this process only, by one that keeps the
  bucket's key names sorted (built outside the timed runs) and bisects to the page, so
  a call costs the page it returns, as S3's does. Before it is timed, every list call
  of each kind of registration (and a grid of edge cases: delete markers, delimiters,
  StartAfter inside a folder, MaxKeys 0 and 1) is answered by both and checked equal.
  It is a model of S3's per-page cost, not S3.
"""

import argparse
import logging
import statistics
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.s3.models import (
    FakeBucket,
    FakeDeleteMarker,
    FakeKey,
    FakeTableStorageBucket,
    S3Backend,
    s3_backends,
)
from sqlalchemy import Engine, create_engine, delete, insert, select, text
from sqlalchemy.engine import make_url

from shopfloor.compaction.listing import known_streams, list_new
from shopfloor.compaction.registration import RegistrationCounts, register
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.storage import S3Credentials, StorageLocation

START = datetime(2025, 1, 1, tzinfo=UTC)
ACCOUNT = "123456789012"  # moto's default account: the one its server answers for
KINDS = ("incremental", "fresh", "full")

# moto's own implementation, kept before anything is patched.
MOTO_LIST_V2 = S3Backend.list_objects_v2


# -- the indexed listing ----------------------------------------------------------------
class KeyIndex:
    """Sorted key names per bucket: what lets a list call start at its page.

    Rebuilt when the bucket's key set may have changed: its number of keys, or its
    generation, which whoever puts or deletes objects bumps (``changed``); a put that
    replaces a key, or a delete plus a put, keeps the count. ``builds`` counts the
    rebuilds, so the benchmark can show none happened inside a timed run.
    """

    def __init__(self) -> None:
        self.builds = 0
        self._generations: dict[str, int] = {}
        self._cache: dict[str, tuple[tuple[int, int], list[str]]] = {}

    def changed(self, bucket_name: str) -> None:
        self._generations[bucket_name] = self._generations.get(bucket_name, 0) + 1

    def names(self, bucket: FakeBucket) -> list[str]:
        stamp = (len(bucket.keys), self._generations.get(bucket.name, 0))
        hit = self._cache.get(bucket.name)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        # dict.keys: every name, whether its latest version is a key or a delete marker
        # (moto derives common prefixes from both).
        names = sorted(dict.keys(bucket.keys))
        self._cache[bucket.name] = (stamp, names)
        self.builds += 1
        return names


INDEX = KeyIndex()


def _past(folder: str) -> str:
    """The smallest string above every string that starts with ``folder``."""
    return folder[:-1] + chr(ord(folder[-1]) + 1)


def indexed_list_objects_v2(self: S3Backend, bucket: FakeBucket, prefix: str | None,
                            delimiter: str | None, continuation_token: str | None,
                            start_after: str | None, max_keys: int
                            ) -> tuple[list[FakeKey | str], bool, str | None]:
    """``S3Backend.list_objects_v2`` at the cost of the page it returns.

    Same answer as moto's: keys under ``prefix`` (delete markers left out) and, with a
    ``delimiter``, the common prefixes (from keys and delete markers alike), in name
    order, after ``start_after`` or the key a continuation token stands for, cut at
    ``max_keys`` by moto's own ``_truncate_result`` (which records the next token).
    Instead of walking the whole bucket it bisects the sorted names to
    ``max(prefix, start)`` and walks ``max_keys + 1`` entries (one more tells whether
    the page is truncated), jumping over each common prefix's keys in one bisect.
    """
    if isinstance(bucket, FakeTableStorageBucket) or max_keys < 0:
        return MOTO_LIST_V2(self, bucket, prefix, delimiter, continuation_token,
                            start_after, max_keys)  # not a case this benchmark makes
    limit: str | None = None
    if continuation_token or start_after:
        limit = (self._pagination_tokens.get(continuation_token) if continuation_token
                 else start_after)
        if limit is None:  # a token moto never issued: leave moto's answer to moto
            return MOTO_LIST_V2(self, bucket, prefix, delimiter, continuation_token,
                                start_after, max_keys)
    prefix = prefix or ""
    names = INDEX.names(bucket)
    i = bisect_left(names, prefix)
    if limit is not None:
        i = max(i, bisect_right(names, limit))
    page: list[FakeKey | str] = []
    want = max_keys + 1 if max_keys > 0 else 0
    while i < len(names) and len(page) < want:
        name = names[i]
        if not name.startswith(prefix):
            break  # the names under a prefix are contiguous: past them, done
        rest = name[len(prefix):]
        if delimiter and delimiter in rest:
            folder = f"{prefix}{rest.split(delimiter, 1)[0]}{delimiter}"
            # moto drops a common prefix that sorts at or before the start, and lists
            # none of its keys either way.
            if limit is None or folder > limit:
                page.append(folder)
            i = bisect_left(names, _past(folder), i)
            continue
        key = bucket.keys[name]  # the latest version, as moto's listing takes it
        if not isinstance(key, FakeDeleteMarker):
            page.append(key)
        i += 1
    return self._truncate_result(page, max_keys)


# -- choosing and checking the listing --------------------------------------------------
@dataclass
class ListStats:
    """ListObjectsV2 requests the backend answered, and how many were checked."""

    calls: int = 0
    compared: int = 0


STATS = ListStats()


def _summary(backend: S3Backend, result: tuple[list[Any], bool, str | None]
             ) -> tuple[list[tuple[str, str]], bool, str | None]:
    items, truncated, token = result
    named = [("key" if isinstance(x, FakeKey) else "folder", backend._get_name(x))
             for x in items]
    # A token is an opaque handle: what matters is the key it resumes after.
    resumes = backend._pagination_tokens.get(token) if token else None
    return named, truncated, resumes


def checked_list_objects_v2(self: S3Backend, bucket: FakeBucket, prefix: str | None,
                            delimiter: str | None, continuation_token: str | None,
                            start_after: str | None, max_keys: int
                            ) -> tuple[list[FakeKey | str], bool, str | None]:
    """Answer with moto's listing after checking the indexed one gives the same."""
    call = (bucket, prefix, delimiter, continuation_token, start_after, max_keys)
    theirs = MOTO_LIST_V2(self, *call)
    ours = indexed_list_objects_v2(self, *call)
    if _summary(self, theirs) != _summary(self, ours):
        raise AssertionError(
            f"indexed listing differs from moto's for {call[1:]} in {bucket.name}:\n"
            f"moto    {_summary(self, theirs)}\nindexed {_summary(self, ours)}")
    STATS.compared += 1
    return theirs


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "moto": MOTO_LIST_V2, "indexed": indexed_list_objects_v2, "check": checked_list_objects_v2}


@contextmanager
def listing(mode: str) -> Iterator[None]:
    """Answer ListObjectsV2 with ``mode``'s implementation (counted) while inside."""
    impl = IMPLEMENTATIONS[mode]

    def list_objects_v2(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
        STATS.calls += 1
        return impl(self, *args, **kwargs)

    S3Backend.list_objects_v2 = list_objects_v2
    try:
        yield
    finally:
        S3Backend.list_objects_v2 = MOTO_LIST_V2


def check_edge_cases(backend: S3Backend) -> int:
    """Compare both listings on a small versioned bucket over a grid of requests the
    registration never makes (delete markers, odd delimiters and starts, tiny pages),
    following continuation tokens to the end. Returns the number of calls compared."""
    name = "listing-check"
    backend.create_bucket(name, "us-east-1")
    backend.put_bucket_versioning(name, "Enabled")
    for key in ("a", "a/b", "a/b/c", "a/b/d", "a/c/x", "a/d", "ab/x", "b", "b/", "b//c",
                "c/x/y", "dstrct_code=D01/plc000/2025010100/run-00000.json",
                "dstrct_code=D01/plc000/2025010101/run-00001.json"):
        backend.put_object(name, key, b"{}")
    for key in ("a/b/d", "a/c/x", "b"):  # versioned: these become delete markers
        backend.delete_object(name, key)
    INDEX.changed(name)
    bucket = backend.get_bucket(name)
    before = STATS.compared
    for prefix in (None, "a", "a/", "a/b", "b/", "dstrct_code=D01/plc000/", "zz"):
        for delimiter in (None, "/", "b/"):
            for start in (None, "", "a", "a/b", "a/b/", "a/b/c", "a/c/", "b/",
                          "dstrct_code=D01/plc000/2025010100"):
                for max_keys in (0, 1, 2, 1000):
                    token = None
                    while True:
                        _, truncated, token = checked_list_objects_v2(
                            backend, bucket, prefix, delimiter, token, start, max_keys)
                        if not truncated:
                            break
    return STATS.compared - before


# -- the benchmark ----------------------------------------------------------------------
def scratch_db(server: str) -> tuple[str, object]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"shopfloor_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(server).set(database=name).render_as_string(hide_password=False), admin


def keys(devices: int, hours: range) -> list[str]:
    out = []
    for d in range(devices):
        district = "D01" if d % 2 == 0 else "D02"
        for h in hours:
            hour = (START + timedelta(hours=h)).strftime("%Y%m%d%H")
            out.append(f"dstrct_code={district}/plc{d:03d}/{hour}/run-{h:05d}.json")
    return out


def put_all(bucket: str, names: list[str]) -> None:
    backend = s3_backends[ACCOUNT]["aws"]
    for name in names:
        backend.put_object(bucket, name, b'{"heartbeat": 1735689600}\n')
    INDEX.changed(bucket)
    INDEX.names(backend.get_bucket(bucket))  # build the index here, not in a timed run


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Bench:
    """The two registries and buckets, and how to run one kind of registration."""

    history: StorageLocation
    fresh_loc: StorageLocation
    big: Engine
    fresh: Engine
    tables: Tables
    new: list[str]
    positions: list[dict[str, Any]] = field(default_factory=list)

    def reset(self, kind: str) -> None:
        """Put the registry back where the kind of run starts from (not timed)."""
        if kind == "fresh":
            with self.fresh.begin() as conn:
                conn.execute(delete(self.tables.s3_object))
                conn.execute(delete(self.tables.s3_listing))
            return
        with self.big.begin() as conn:
            conn.execute(delete(self.tables.s3_object).where(
                self.tables.s3_object.c.key.in_(self.new)))
            conn.execute(delete(self.tables.s3_listing))
            conn.execute(insert(self.tables.s3_listing), self.positions)

    def register(self, kind: str) -> RegistrationCounts:
        if kind == "fresh":
            return register(self.fresh_loc, self.fresh, self.tables, "", None, 2).counts
        return register(self.history, self.big, self.tables, "", None, 2,
                        kind == "full").counts


@dataclass
class Figures:
    """One listing's measurements."""

    runs: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    counts: dict[str, RegistrationCounts] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)
    list_inc: float = 0.0
    list_fresh: float = 0.0

    def median(self, kind: str) -> float:
        return statistics.median(self.runs[kind])


def run_once(bench: Bench, kind: str, figures: Figures) -> float:
    """Reset, then time one registration of ``kind``; keeps its counts and pages."""
    bench.reset(kind)
    calls = STATS.calls
    start = time.perf_counter()
    figures.counts[kind] = bench.register(kind)
    took = time.perf_counter() - start
    figures.pages[kind] = STATS.calls - calls
    return took


def measure(bench: Bench, mode: str, repeat: int) -> Figures:
    figures = Figures()
    with listing(mode):
        for _ in range(repeat):
            for kind in ("incremental", "fresh"):
                figures.runs[kind].append(run_once(bench, kind, figures))
        for _ in range(max(1, repeat // 2)):
            figures.runs["full"].append(run_once(bench, "full", figures))
        # The listing alone (same calls as above, no database).
        with bench.big.connect() as conn:
            known = known_streams(conn, bench.tables, bench.history.url(""), "")
        figures.list_inc = statistics.median(
            timed(lambda: list_new(bench.history, "", known, 2)) for _ in range(repeat))
        figures.list_fresh = statistics.median(
            timed(lambda: list_new(bench.fresh_loc, "", {}, 2)) for _ in range(repeat))
    return figures


def report(mode: str, f: Figures, n_old: int, n_new: int) -> None:
    print(f"-- listing: {mode}")
    for name, c in f.counts.items():
        print(f"{name}: listed {c.listed}, new {c.new}, known {c.known}, "
              f"streams {c.streams}, list calls {c.list_calls}, "
              f"ListObjectsV2 requests {f.pages[name]}")
    inc, frs, full = f.runs["incremental"], f.runs["fresh"], f.runs["full"]
    m_inc, m_fresh, m_full = (f.median(k) for k in KINDS)
    print(f"incremental, {n_old} registered + {n_new} new: median {m_inc:.3f} s "
          f"(runs {', '.join(f'{x:.3f}' for x in inc)})")
    print(f"fresh, only the {n_new} new: median {m_fresh:.3f} s "
          f"(runs {', '.join(f'{x:.3f}' for x in frs)})")
    print(f"full listing of the history: median {m_full:.3f} s "
          f"(runs {', '.join(f'{x:.3f}' for x in full)})")
    print(f"ratio incremental / fresh: {m_inc / m_fresh:.2f}x (goal < 2x); "
          f"full / fresh: {m_full / m_fresh:.1f}x")
    print(f"listing alone: incremental {f.list_inc:.3f} s, fresh {f.list_fresh:.3f} s; "
          f"the rest (registry, positions): incremental {m_inc - f.list_inc:.3f} s, "
          f"fresh {m_fresh - f.list_fresh:.3f} s "
          f"({(m_inc - f.list_inc) / (m_fresh - f.list_fresh):.2f}x)")


def summary(results: dict[str, Figures]) -> None:
    print("-- summary (medians)")
    print(f"{'listing':8} {'incremental':>11} {'fresh':>7} {'full':>7} {'inc/fresh':>9} "
          f"{'full/fresh':>10}  list calls inc/fresh/full  requests inc/fresh/full  "
          f"keys listed inc/fresh/full")
    for mode, f in results.items():
        m = {k: f.median(k) for k in KINDS}
        print(f"{mode:8} {m['incremental']:10.3f}s {m['fresh']:6.3f}s {m['full']:6.3f}s "
              f"{m['incremental'] / m['fresh']:8.2f}x {m['full'] / m['fresh']:9.1f}x  "
              f"{'/'.join(str(f.counts[k].list_calls) for k in KINDS):>26}  "
              f"{'/'.join(str(f.pages[k]) for k in KINDS):>24}  "
              f"{'/'.join(str(f.counts[k].listed) for k in KINDS):>27}")


def check(bench: Bench, backend: S3Backend) -> None:
    """Every list call of each kind of registration, answered by both listings."""
    per_kind = {}
    with listing("check"):
        for kind in KINDS:
            before = STATS.compared
            bench.reset(kind)
            bench.register(kind)
            per_kind[kind] = STATS.compared - before
    edge = check_edge_cases(backend)
    print(f"indexed listing checked equal to moto's on {sum(per_kind.values()) + edge} "
          f"calls: {', '.join(f'{k} {n}' for k, n in per_kind.items())}, "
          f"edge cases {edge}")


def run(args: argparse.Namespace, s3: Any, creds: S3Credentials, modes: list[str]) -> None:
    backend = s3_backends[ACCOUNT]["aws"]
    for b in ("history", "fresh"):
        s3.create_bucket(Bucket=b)
    old = keys(args.devices, range(args.hours))
    new = keys(args.devices, range(args.hours, args.hours + args.new_hours))
    t = time.perf_counter()
    put_all("history", old)
    print(f"put {len(old)} objects in {time.perf_counter() - t:.1f} s")

    big_url, admin = scratch_db(args.pg_url)
    fresh_url, _ = scratch_db(args.pg_url)
    big, fresh = make_engine(big_url), make_engine(fresh_url)
    try:
        bench = Bench(StorageLocation("s3", "history", "", creds),
                      StorageLocation("s3", "fresh", "", creds), big, fresh, init_db(big), new)
        init_db(fresh)
        with listing(modes[0]):
            first = timed(lambda: register(bench.history, bench.big, bench.tables, "",
                                           None, 2))
        print(f"first registration of {len(old)} objects (full listing, {modes[0]} "
              f"listing): {first:.2f} s")
        put_all("history", new)
        put_all("fresh", new)
        with bench.big.connect() as conn:
            bench.positions = [dict(r._mapping)
                               for r in conn.execute(select(bench.tables.s3_listing))]
        results = {}
        for mode in modes:
            if mode == "indexed":
                check(bench, backend)
            builds = INDEX.builds
            results[mode] = measure(bench, mode, args.repeat)
            if INDEX.builds != builds:
                raise AssertionError("the key index was rebuilt inside a timed run")
            report(mode, results[mode], len(old), len(new))
        if len(results) > 1:
            summary(results)
    finally:
        big.dispose()
        fresh.dispose()
        with admin.connect() as conn:
            for url in (big_url, fresh_url):
                conn.execute(text(
                    f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--hours", type=int, default=2000)
    ap.add_argument("--new-hours", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--listing", choices=("moto", "indexed", "both"), default="both",
                    help="how the moto server answers ListObjectsV2 (module docstring)")
    ap.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server._server.server_address[:2]
        endpoint = f"http://{host}:{port}"
        creds = S3Credentials("testing", "testing", None, "us-east-1", endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        modes = ["moto", "indexed"] if args.listing == "both" else [args.listing]
        run(args, s3, creds, modes)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
