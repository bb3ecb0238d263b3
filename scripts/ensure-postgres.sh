#!/usr/bin/env bash
# Make sure a PostgreSQL answers on the test URL's host and port (default
# 127.0.0.1:5432); start the packaged cluster as the `postgres` user if none does.
set -euo pipefail
host=127.0.0.1; port=5432
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port"; then
  exit 0
fi
if [ -n "${SHOPFLOOR_TEST_PG_URL:-}" ]; then
  echo "SHOPFLOOR_TEST_PG_URL is set; not starting a local PostgreSQL"; exit 0
fi
version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$version" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >/dev/null
fi
conf=/etc/postgresql/$version/main
# Trust auth on loopback for the test databases (a throwaway cluster on a test machine).
if ! grep -q "shopfloor-test" "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust # shopfloor-test' "$conf/pg_hba.conf"
  sed -i '1i local all all trust # shopfloor-test' "$conf/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start || \
  runuser -u postgres -- pg_ctlcluster "$version" main start
for _ in $(seq 1 30); do
  pg_isready -q -h "$host" -p "$port" && exit 0
  sleep 1
done
echo "PostgreSQL did not start on $host:$port" >&2
exit 1
