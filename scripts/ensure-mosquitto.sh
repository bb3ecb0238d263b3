#!/usr/bin/env bash
# Make sure the MQTT tests (tests/integration/mqtt) reach a Mosquitto broker on
# 127.0.0.1:1883 without a login: install Debian's mosquitto when it is missing, and
# start one on loopback when nothing answers there (the package's own service may
# already have). A broker that is already running is used as it is.
# SHOPFLOOR_MOSQUITTO_PORT: another port (to try this script beside a running broker).
set -euo pipefail
host=127.0.0.1; port=${SHOPFLOOR_MOSQUITTO_PORT:-1883}
answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
answers && exit 0
if ! command -v mosquitto >/dev/null 2>&1; then
  echo "installing: mosquitto"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
for _ in $(seq 1 5); do answers && exit 0; sleep 1; done
# No service answered: a broker of our own, loopback only, anonymous, no persistence
# (the tests keep sessions across collector restarts, not broker restarts).
dir=$(mktemp -d /tmp/shopfloor-mosquitto.XXXXXX)
cat > "$dir/mosquitto.conf" <<CONF
listener $port $host
allow_anonymous true
CONF
chmod 755 "$dir"; chmod 644 "$dir/mosquitto.conf"
mosquitto -d -c "$dir/mosquitto.conf"
for _ in $(seq 1 30); do answers && exit 0; sleep 1; done
echo "Mosquitto is not reachable on $host:$port" >&2
exit 1
