# Shared helpers for the local test cluster scripts. Sourced, not run.
# shellcheck shell=bash
set -euo pipefail

TC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export REPO_ROOT
REPO_ROOT=$(cd "$TC_DIR/../.." && pwd)
# shellcheck source=versions.env
. "$TC_DIR/versions.env"

# Built binaries and packaged charts live outside the clone so that later runs
# (and CI on the same machine) reuse them.
SMI_CACHE=${SMI_CACHE:-/var/cache/servicemesh-istio}
# Runtime state of a running cluster (certificates, etcd data, logs, pids).
SMI_STATE=${SMI_STATE:-/var/lib/servicemesh-istio/cluster}
SMI_NETNS=${SMI_NETNS:-smistio}

die() {
  echo "ERROR: $*" >&2
  exit 1
}

log() {
  printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"
}

# Run a long command, printing what it is doing and how long it has taken
# every 30 seconds, so that a cold build is never minutes of silence.
# Set progress_hint to a function name to add its output to each report.
with_progress() {
  local what=$1
  shift
  local start=$SECONDS logf
  logf=$(mktemp)
  log "$what ..."
  "$@" >"$logf" 2>&1 &
  local pid=$! next=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if ((SECONDS >= next)); then
      next=$((SECONDS + 30))
      log "  still $what: $((SECONDS - start)) s so far${progress_hint:+, $($progress_hint)}"
    fi
  done
  if ! wait "$pid"; then
    tail -n 40 "$logf" >&2
    rm -f "$logf"
    die "$what failed (last 40 lines above)"
  fi
  rm -f "$logf"
  log "$what done in $((SECONDS - start)) s"
}

need_root() {
  [ "$(id -u)" = 0 ] || die "this needs root (it creates the network namespace '$SMI_NETNS'); run it with sudo or as root"
}

need_go() {
  command -v go >/dev/null 2>&1 || die "Go is not installed or not on PATH; install Go 1.24 or newer (e.g. apt-get install golang-go, or the toolchain from go.dev) and retry"
}

bin_dir() { echo "$SMI_CACHE/bin/$1-$2"; }

# The istio.io/istio pseudo-version istiod and istioctl are built from
# (ISTIOD_BUILD_SNAPSHOT, looked up in ISTIO_SNAPSHOTS; versions.env).
istio_build_pseudo() {
  local pair
  for pair in $ISTIO_SNAPSHOTS; do
    [ "${pair%%=*}" = "$ISTIOD_BUILD_SNAPSHOT" ] && { echo "${pair#*=}"; return; }
  done
  die "ISTIOD_BUILD_SNAPSHOT $ISTIOD_BUILD_SNAPSHOT is not in ISTIO_SNAPSHOTS (versions.env)"
}
