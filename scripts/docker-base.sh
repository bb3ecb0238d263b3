#!/usr/bin/env bash
# Print the base image for `make image`, making a local one when no registry has it.
#   scripts/docker-base.sh [BASE_IMAGE]
# 1. BASE_IMAGE (default python:3.11-slim-bookworm) when the engine has it or can pull it;
# 2. else LOCAL_BASE (default shopfloor-base:bookworm), made once with
#    `debootstrap --variant=minbase bookworm` + `docker import` (about 30 s, as root) and
#    reused while it exists: `docker rmi shopfloor-base:bookworm` makes it again.
# The Dockerfile installs Python 3.11 from Debian when the base has none.
set -euo pipefail

BASE_IMAGE=${1:-python:3.11-slim-bookworm}
LOCAL_BASE=${LOCAL_BASE:-shopfloor-base:bookworm}
DOCKER=${DOCKER:-docker}
# A pull that cannot reach a registry fails in seconds; a slow one is given up on.
PULL_TIMEOUT=${PULL_TIMEOUT:-120}

has_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if has_image "$BASE_IMAGE"; then echo "$BASE_IMAGE"; exit 0; fi
if has_image "$LOCAL_BASE"; then echo "$LOCAL_BASE"; exit 0; fi
if [ "${SKIP_PULL:-0}" != 1 ] && timeout "$PULL_TIMEOUT" "$DOCKER" pull -q "$BASE_IMAGE" >&2; then
  echo "$BASE_IMAGE"; exit 0
fi
echo "docker-base: $BASE_IMAGE cannot be pulled; making $LOCAL_BASE with debootstrap" >&2

if [ "$(id -u)" != 0 ]; then
  echo "docker-base: debootstrap needs root (run as root, or load $BASE_IMAGE first)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { apt-get update -qq >&2; apt-get install -y -qq debootstrap >&2; }

# The Debian mirror apt already uses here (deb822 sources or sources.list), so a plant
# network's own mirror is used when it has one.
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
             grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}') \
            | grep -v security | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /tmp/shopfloor-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
# Updates and security fixes, as the python image has them.
security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# No apt caches, documentation or translations in the image (the python image has none).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
# ... nor later, from the packages the Dockerfile installs.
cat > "$root/etc/dpkg/dpkg.cfg.d/shopfloor-nodoc" <<NODOC
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
NODOC
tar -C "$root" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$LOCAL_BASE" >&2
echo "$LOCAL_BASE"
