#!/usr/bin/env bash
# Make sure the tests can reach PostgreSQL as `postgres` on 127.0.0.1:5432 without a
# password: start the packaged cluster (as the `postgres` user, via pg_ctlcluster) when
# nothing answers, and allow trust auth on loopback when a password would be asked.
# With SHOPFLOOR_TEST_PG_URL set, that server is used as it is.
set -euo pipefail
if [ -n "${SHOPFLOOR_TEST_PG_URL:-}" ]; then
  echo "SHOPFLOOR_TEST_PG_URL is set; using that server"; exit 0
fi
host=127.0.0.1; port=5432
can_connect() {
  PGCONNECT_TIMEOUT=3 psql -h "$host" -p "$port" -U postgres -d postgres -w -tAc 'SELECT 1' \
    >/dev/null 2>&1
}
can_connect && exit 0

version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$version" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >/dev/null
fi
conf=/etc/postgresql/$version/main
# Trust on loopback only, for a throwaway test cluster on a test machine.
if ! grep -q "shopfloor-test" "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust # shopfloor-test' "$conf/pg_hba.conf"
  sed -i '1i local all all trust # shopfloor-test' "$conf/pg_hba.conf"
fi
if pg_isready -q -h "$host" -p "$port"; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
else
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do
  can_connect && exit 0
  sleep 1
done
echo "PostgreSQL is not reachable as postgres on $host:$port" >&2
exit 1
