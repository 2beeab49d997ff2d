#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: `make test`).
#   1. static gates: yamllint, ansible-lint (production), syntax checks, ansible-test sanity
#   2. the local test cluster (built once, then cached), started fresh
#   3. pytest inside the cluster's network namespace: unit tests (real DNS and
#      TLS servers on loopback) and cluster tests (roles and playbooks against
#      the real API server)
#   4. pytest outside it: the cluster's own life cycle (start, status, stale
#      state, stop leaves no process), on a second namespace of its own
#   5. the cluster is stopped whatever happened
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections" ANSIBLE_CONFIG="$PWD/ansible.cfg" PY_COLORS=0 ANSIBLE_NOCOLOR=1
CLUSTER=hack/testcluster/cluster.sh
results=$(mktemp -d)
t0=$SECONDS

step() { printf '\n######## %s (%d s elapsed)\n' "$*" "$((SECONDS - t0))"; }

step "static gates"
bash hack/lint.sh || { echo "FAILED: static gates (lint)"; exit 1; }
bash hack/sanity.sh || { echo "FAILED: ansible-test sanity"; exit 1; }

step "local test cluster"
# A fresh cluster for every run: whatever an earlier run left (a running
# cluster, or a namespace whose processes were killed) is stopped first.
bash $CLUSTER stop
trap 'bash $CLUSTER stop' EXIT
bash $CLUSTER start || { echo "FAILED: the local test cluster did not start"; exit 1; }

step "pytest inside the cluster's network namespace (unit + cluster)"
bash $CLUSTER exec -- .venv/bin/pytest -p no:cacheprovider --junitxml="$results/ns.xml" tests --ignore=tests/lifecycle
rc1=$?

step "pytest outside: cluster life cycle"
.venv/bin/pytest -p no:cacheprovider --junitxml="$results/lifecycle.xml" tests/lifecycle
rc2=$?

step "summary"
.venv/bin/python - "$results"/*.xml <<'PY'
import sys
import xml.etree.ElementTree as ET
t = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in sys.argv[1:]:
    root = ET.parse(f).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        for k in t:
            t[k] += int(s.get(k, 0))
passed = t["tests"] - t["failures"] - t["errors"] - t["skipped"]
print(f"total: {passed} passed, {t['failures'] + t['errors']} failed, {t['skipped']} skipped")
PY
echo "suite time: $((SECONDS - t0)) s"
[ $rc1 = 0 ] && [ $rc2 = 0 ]
