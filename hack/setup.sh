#!/usr/bin/env bash
# One-time (then cached) set-up of the development tool chain:
#   - Debian packages the harness and the tests need (only those missing);
#   - the pinned Python tool chain in a virtualenv cached outside the clone,
#     keyed by the hash of requirements-dev.txt, linked as .venv;
#   - the collection linked into .collections/ansible_collections/servicemesh/istio
#     so that FQCN names resolve for ansible-playbook, ansible-doc and molecule.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMI_CACHE=${SMI_CACHE:-/var/cache/servicemesh-istio}
cd "$ROOT"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

# --- Debian packages --------------------------------------------------------
# iproute2: network namespace; openssl: cluster certificates; dnsmasq and
# knot: DNS servers for the module tests; rsync: copying the collection for
# ansible-test; shellcheck: ansible-test's shell script check. (Prometheus
# is built from its Go module: Debian's package lacks Kubernetes discovery.)
apt_pkgs=(iproute2 openssl dnsmasq-base knot knot-dnsutils rsync shellcheck curl)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "Debian packages missing: ${missing[*]}; run this as root or install them with: sudo apt-get install ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # knot's package starts a system daemon; the tests start their own.
  systemctl disable --now knot >/dev/null 2>&1 || true
fi

# --- Python tool chain ------------------------------------------------------
py=${PYTHON:-python3}
command -v "$py" >/dev/null || die "python3 not found; install Python 3.11 or newer"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
  die "ansible-core 2.19 needs Python 3.11 or newer; $($py --version) found (set PYTHON=/path/to/python3.11)"
hash=$(cat requirements-dev.txt requirements.txt | sha256sum | cut -c1-12)
venv="$SMI_CACHE/venv-$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-$hash"
if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -f "$venv/.complete" ]; then
  log "creating the Python tool chain in $venv (first time only, about 1-2 min)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt -r requirements.txt
  touch "$venv/.complete"
fi
ln -sfn "$venv" .venv
# Read each tool's whole output, then keep its first line: `| head -1` closes
# the pipe early and ansible then dies with a "Broken pipe" traceback.
first_line() { local out; out=$(NO_COLOR=1 "$@" 2>/dev/null) || true; printf '%s' "${out%%$'\n'*}"; }
lint_version=$(first_line .venv/bin/ansible-lint --version)
log "Python tool chain: $(first_line .venv/bin/ansible --version), $(cut -d' ' -f1-2 <<<"$lint_version")"

# --- the collection under development, visible by FQCN ----------------------
mkdir -p .collections/ansible_collections/servicemesh
ln -sfn ../../.. .collections/ansible_collections/servicemesh/istio
