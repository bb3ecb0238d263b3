"""Registration cost with a long history: 100,000 objects registered, 100 new ones,
against a fresh registration of only those 100.

    .venv/bin/python benchmarks/bench_registration.py [--devices 50] [--hours 2000]
        [--new-hours 2] [--repeat 5] [--pg-url URL]

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
"""

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, delete, insert, select, text
from sqlalchemy.engine import make_url

from shopfloor.compaction.listing import known_streams, list_new
from shopfloor.compaction.registration import register
from shopfloor.db.engine import init_db, make_engine
from shopfloor.storage import S3Credentials, StorageLocation

START = datetime(2025, 1, 1, tzinfo=UTC)


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
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["aws"]
    for name in names:
        backend.put_object(bucket, name, b'{"heartbeat": 1735689600}\n')


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--hours", type=int, default=2000)
    ap.add_argument("--new-hours", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    creds = S3Credentials("testing", "testing", None, "us-east-1", endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    for b in ("history", "fresh"):
        s3.create_bucket(Bucket=b)
    old = keys(args.devices, range(args.hours))
    new = keys(args.devices, range(args.hours, args.hours + args.new_hours))
    t = time.perf_counter()
    put_all("history", old)
    print(f"put {len(old)} objects in {time.perf_counter() - t:.1f} s")
    history = StorageLocation("s3", "history", "", creds)
    fresh_loc = StorageLocation("s3", "fresh", "", creds)

    big_url, admin = scratch_db(args.pg_url)
    fresh_url, _ = scratch_db(args.pg_url)
    big, fresh = make_engine(big_url), make_engine(fresh_url)
    try:
        tables = init_db(big)
        init_db(fresh)
        first = timed(lambda: register(history, big, tables, "", None, 2))
        print(f"first registration of {len(old)} objects (full listing): {first:.2f} s")
        put_all("history", new)
        put_all("fresh", new)
        with big.connect() as conn:
            positions = [dict(r._mapping) for r in conn.execute(select(tables.s3_listing))]

        def reset_big() -> None:
            with big.begin() as conn:
                conn.execute(delete(tables.s3_object).where(
                    tables.s3_object.c.key.in_(new)))
                conn.execute(delete(tables.s3_listing))
                conn.execute(insert(tables.s3_listing), positions)

        def reset_fresh() -> None:
            with fresh.begin() as conn:
                conn.execute(delete(tables.s3_object))
                conn.execute(delete(tables.s3_listing))

        inc, frs, full = [], [], []
        counts = {}
        for _ in range(args.repeat):
            reset_big()
            inc.append(timed(lambda: counts.__setitem__(
                "inc", register(history, big, tables, "", None, 2).counts)))
            reset_fresh()
            frs.append(timed(lambda: counts.__setitem__(
                "fresh", register(fresh_loc, fresh, tables, "", None, 2).counts)))
        for _ in range(max(1, args.repeat // 2)):
            reset_big()
            full.append(timed(lambda: counts.__setitem__(
                "full", register(history, big, tables, "", None, 2, True).counts)))
        # The listing alone (same calls as above, no database): on moto a list call scans
        # the whole bucket, so this part is moto's, not what S3 charges for.
        with big.connect() as conn:
            known = known_streams(conn, tables, history.url(""), "")
        list_inc = statistics.median(timed(lambda: list_new(history, "", known, 2))
                                     for _ in range(args.repeat))
        list_fresh = statistics.median(timed(lambda: list_new(fresh_loc, "", {}, 2))
                                       for _ in range(args.repeat))
        for name, c in counts.items():
            print(f"{name}: listed {c.listed}, new {c.new}, known {c.known}, "
                  f"streams {c.streams}, list calls {c.list_calls}")
        m_inc, m_fresh, m_full = (statistics.median(x) for x in (inc, frs, full))
        print(f"incremental, {len(old)} registered + {len(new)} new: median {m_inc:.3f} s "
              f"(runs {', '.join(f'{x:.3f}' for x in inc)})")
        print(f"fresh, only the {len(new)} new: median {m_fresh:.3f} s "
              f"(runs {', '.join(f'{x:.3f}' for x in frs)})")
        print(f"full listing of the history: median {m_full:.3f} s")
        print(f"ratio incremental / fresh: {m_inc / m_fresh:.2f}x (goal < 2x); "
              f"full / fresh: {m_full / m_fresh:.1f}x")
        print(f"listing alone: incremental {list_inc:.3f} s, fresh {list_fresh:.3f} s; "
              f"the rest (registry, positions): incremental {m_inc - list_inc:.3f} s, "
              f"fresh {m_fresh - list_fresh:.3f} s "
              f"({(m_inc - list_inc) / (m_fresh - list_fresh):.2f}x)")
    finally:
        big.dispose()
        fresh.dispose()
        with admin.connect() as conn:
            for url in (big_url, fresh_url):
                conn.execute(text(
                    f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        server.stop()


if __name__ == "__main__":
    main()
