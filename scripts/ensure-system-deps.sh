#!/usr/bin/env bash
# Install the Debian packages shopfloor needs, only when they are missing:
# JDBC drivers for Spark (the demo needs the SQLite one) and, for the tests, a
# PostgreSQL server and Chromium (the dashboard's browser test drives Debian's
# /usr/bin/chromium with Playwright; no browser is downloaded). `--jars-only` installs
# just the JDBC drivers.
set -euo pipefail
need=()
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
[ -f /usr/share/java/sqlite-jdbc.jar ] || need+=(libxerial-sqlite-jdbc-java)
[ -f /usr/share/java/mariadb-java-client.jar ] || need+=(libmariadb-java)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
if [ "${1:-}" != "--jars-only" ]; then
  command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
