#!/usr/bin/env bash
# Build the wheelhouse the image installs from (no package index is needed inside the
# build, as on an air-gapped plant network):
#   scripts/docker-wheelhouse.sh PYTHON WHEELHOUSE
# PYTHON is a Python 3.11 with pip (the project's .venv); WHEELHOUSE is a folder outside
# git (make's default: .shopfloor/wheelhouse). requirements.txt there lists pyproject's
# runtime dependencies; it is rewritten only when they change, so Docker's layer cache
# holds while they stay the same.
set -euo pipefail
python=$1
wheelhouse=$2
mkdir -p "$wheelhouse"
new=$(mktemp)
trap 'rm -f "$new"' EXIT
"$python" - >"$new" <<'PY'
import tomllib
import os

deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
# The plant dashboard (streamlit, pydeck, altair, pillow: 90 MB) runs where people look
# at it (`shopfloor dashboard` from a checkout), not in flow-run containers.
excluded = os.environ.get("IMAGE_EXCLUDE", "streamlit").split()
deps = [d for d in deps if d.split()[0].split("=")[0].split("<")[0] not in excluded]
# setuptools and wheel build the project itself inside the image, with no index.
print("\n".join([*deps, "setuptools>=68", "wheel"]))
PY
if ! cmp -s "$new" "$wheelhouse/requirements.txt"; then
  cp "$new" "$wheelhouse/requirements.txt"
fi
# pip wheel downloads wheels and builds the few sdists (pyspark) on this machine.
# Markers are judged by this Python; Debian's 3.11.2 in the image (the debootstrap base)
# also needs what `python_full_version < "3.11.3"` asks for (redis: async-timeout).
"$python" -m pip wheel --quiet --disable-pip-version-check \
  --wheel-dir "$wheelhouse" -r "$wheelhouse/requirements.txt" \
  ${IMAGE_ONLY_REQUIREMENTS:-"async-timeout>=4.0.3"}
"$python" - "$wheelhouse" <<'PY'
import sys
from pathlib import Path
print(f"wheelhouse: {len(list(Path(sys.argv[1]).glob('*.whl')))} wheels in {sys.argv[1]}")
PY
