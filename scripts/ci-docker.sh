#!/usr/bin/env bash
# The Docker suite on a bare machine (`make docker-ci`, docs/docker.md):
#   1. docker.io and debootstrap installed with apt when missing (as root);
#   2. a Docker engine: the running one, else `dockerd --bridge=none --iptables=false`
#      started here (host network only) and stopped at the end;
#   3. `make image` (the debootstrap base and the wheelhouse when there is no registry);
#   4. `make docker-test`: the pytest marker `docker` (tests/docker);
#   5. no container left: any container made while this ran is removed and fails the run.
# Exit status: pytest's (or the build's). It prints one `SKIP docker-ci: <reason>` line and
# exits 0 only when no engine can run here (not root and none running, or dockerd cannot
# start: no overlay filesystem or cgroups in an unprivileged container); a test or build
# failure is never hidden. Timings of each step are printed at the end.
set -euo pipefail

DOCKER=${DOCKER:-docker}
MAKE=${MAKE:-make}
DOCKERD_LOG=${DOCKERD_LOG:-${TMPDIR:-/tmp}/shopfloor-dockerd.log}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}

t0=$(date +%s)
step_start=$t0
timings=()
step() {  # step NAME: close the previous step's timer and name the next one
  local now
  now=$(date +%s)
  timings+=("$(printf '%-10s %4d s' "${current:-setup}" $((now - step_start)))")
  step_start=$now
  current=$1
  echo "== docker-ci: $1"
}
skip() {
  echo "SKIP docker-ci: $*"
  exit 0
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}
can_be_root() { [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }

dockerd_pid=""
before=""
finish() {
  local status=$? left
  set +e
  if [ -n "$current" ] && [ "$current" != done ]; then step done; fi
  if $DOCKER info >/dev/null 2>&1; then
    # Containers made while this ran (the build's and the tests'): none may be left.
    left=$(comm -13 <(echo "$before" | sort) <($DOCKER ps -aq --no-trunc | sort))
    if [ -n "$left" ]; then
      echo "docker-ci: FAIL: $(echo "$left" | wc -l) container(s) left behind (removed now):"
      $DOCKER ps -a --no-trunc --filter "id=$(echo "$left" | head -n1)" | sed 's/^/  /'
      echo "$left" | xargs -r $DOCKER rm -f >/dev/null
      [ $status = 0 ] && status=1
    else
      echo "docker-ci: no container left behind"
    fi
  fi
  if [ -n "$dockerd_pid" ]; then
    if [ -n "$($DOCKER ps -q 2>/dev/null)" ]; then
      echo "docker-ci: containers of others are running: dockerd (pid $dockerd_pid) left running"
    else
      echo "docker-ci: stopping the dockerd started here (pid $dockerd_pid)"
      as_root kill -TERM "$dockerd_pid"
      for _ in $(seq 60); do as_root kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    fi
  fi
  printf 'docker-ci: %s\n' "${timings[@]}"
  echo "docker-ci: total $(( $(date +%s) - t0 )) s, exit $status"
  exit $status
}
trap finish EXIT
current=""

step install
missing=()
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if ! $DOCKER info >/dev/null 2>&1 && ! can_be_root; then
    skip "no Docker engine running and not root (cannot install ${missing[*]} or start dockerd)"
  fi
  if can_be_root; then
    echo "docker-ci: apt-get install ${missing[*]}"
    # No init script may start an engine of its own (default bridge, iptables): this script
    # starts the engine itself. policy-rc.d 101 = "action forbidden" for the install only.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' | as_root tee $policy >/dev/null && as_root chmod +x $policy
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
    [ -n "$policy" ] && as_root rm -f "$policy"
  fi
fi
export PATH=$PATH:/usr/sbin:/sbin

step engine
if ! $DOCKER info >/dev/null 2>&1; then
  can_be_root || skip "no Docker engine running and not root to start dockerd"
  echo "docker-ci: starting dockerd --bridge=none --iptables=false (log: $DOCKERD_LOG)"
  as_root sh -c "dockerd --bridge=none --iptables=false --ip6tables=false \
    >'$DOCKERD_LOG' 2>&1 & echo \$! > '$DOCKERD_LOG.pid'"
  dockerd_pid=$(cat "$DOCKERD_LOG.pid")
  for _ in $(seq "$DOCKERD_WAIT"); do
    $DOCKER info >/dev/null 2>&1 && break
    if ! as_root kill -0 "$dockerd_pid" 2>/dev/null; then
      dockerd_pid=""
      tail -n 5 "$DOCKERD_LOG" | sed 's/^/  dockerd: /'
      skip "dockerd cannot start here (last lines of its log above)"
    fi
    sleep 1
  done
  $DOCKER info >/dev/null 2>&1 || skip "dockerd did not answer in ${DOCKERD_WAIT} s (log: $DOCKERD_LOG)"
fi
before=$($DOCKER ps -aq --no-trunc)
echo "docker-ci: engine $($DOCKER version --format '{{.Server.Version}}')," \
  "$($DOCKER ps -q | wc -l) container(s) running before"

step image
$MAKE image

step tests
$MAKE docker-test

step done
