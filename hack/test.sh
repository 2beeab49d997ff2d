#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: `make test`).
#   1. static gates: yamllint, ansible-lint (production), syntax checks, and
#      ansible-test sanity beside them
#   2. three local test clusters (built once, then cached), started fresh
#   3. pytest inside their network namespaces, three parts side by side: unit
#      tests (real DNS and TLS servers on loopback) and cluster tests (roles
#      and playbooks against the real API server)
#   4. after part 1, pytest outside them: the cluster's own life cycle (start,
#      status, stale state, stop leaves no process), on a namespace of its own
#   5. the clusters are stopped whatever happened
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections" ANSIBLE_CONFIG="$PWD/ansible.cfg" PY_COLORS=0 ANSIBLE_NOCOLOR=1
CLUSTER=hack/testcluster/cluster.sh
results=$(mktemp -d)
t0=$SECONDS

step() { printf '\n######## %s (%d s elapsed)\n' "$*" "$((SECONDS - t0))"; }

step "static gates"
# Every test module is collected once, all parts together, before any cluster
# starts: two test files with one basename (no __init__.py here), or a module
# that does not import, fail in seconds rather than take a part down later.
.venv/bin/pytest -p no:cacheprovider --collect-only -q tests >"$results/collect.log" 2>&1 \
  || { tail -n 30 "$results/collect.log"; echo "FAILED: pytest could not collect the tests"; exit 1; }
# lint and sanity side by side (2 cores), each printed whole when both are done.
bash hack/lint.sh >"$results/lint.log" 2>&1 &
lint_pid=$!
bash hack/sanity.sh >"$results/sanity.log" 2>&1 &
sanity_pid=$!
wait $lint_pid
lint_rc=$?
wait $sanity_pid
sanity_rc=$?
cat "$results/lint.log" "$results/sanity.log"
[ $lint_rc = 0 ] || { echo "FAILED: static gates (lint)"; exit 1; }
[ $sanity_rc = 0 ] || { echo "FAILED: ansible-test sanity"; exit 1; }

step "local test clusters"
# Three fresh clusters, each in its own network namespace and state directory,
# so that the cluster tests run in three parts side by side (2 cores: a
# playbook run mostly waits on the API server, istiod, cert-manager and the
# ACME server). Whatever an earlier run left (a running cluster, or a
# namespace whose processes were killed) is stopped first.
SECOND=(env SMI_NETNS=smistio-2 SMI_STATE=/var/lib/servicemesh-istio/cluster-2)
THIRD=(env SMI_NETNS=smistio-3 SMI_STATE=/var/lib/servicemesh-istio/cluster-3)
stop_all() { bash $CLUSTER stop; "${SECOND[@]}" bash $CLUSTER stop; "${THIRD[@]}" bash $CLUSTER stop; }
stop_all
trap stop_all EXIT
bash $CLUSTER start || { echo "FAILED: the local test cluster did not start"; exit 1; }
"${SECOND[@]}" bash $CLUSTER start || { echo "FAILED: the second local test cluster did not start"; exit 1; }
"${THIRD[@]}" bash $CLUSTER start || { echo "FAILED: the third local test cluster did not start"; exit 1; }

step "pytest inside the clusters' network namespaces (unit + cluster), three parts side by side"
# Part 1: unit, render, and the cluster tests of the test cluster itself, the
# modules, the input matrix, ingress/TLS and the install options (then the
# life cycle); part 2: the site (and what it overlaps), mTLS, pushed config, namespaces, molecule,
# the connection ways and the faults; part 3: the observability and canary roles, AWX and
# the run lock. Each test
# file belongs to exactly one part (the files of parts 2
# and 3 are named here, part 1 takes the rest). The split follows the measured
# times (docs/testing.md): the parts share 2 cores, so they should end together.
PART2=(tests/cluster/test_site_istio_bookinfo.py tests/cluster/test_mtls_verify.py
       tests/cluster/test_proxy_config_info.py tests/cluster/test_bookinfo_namespaces.py
       tests/molecule/test_molecule_scenarios.py tests/cluster/test_connection_groups.py
       tests/cluster/test_faults.py tests/cluster/test_site_overlap.py)
PART3=(tests/cluster/test_canary.py tests/cluster/test_observability.py
       tests/cluster/test_awx_job_templates.py tests/cluster/test_run_lock.py)
part1_ignores=(--ignore=tests/lifecycle)
for f in "${PART2[@]}" "${PART3[@]}"; do
  [ -e "$f" ] || { echo "FAILED: hack/test.sh names $f, which does not exist"; exit 1; }
  part1_ignores+=(--ignore="$f")
done
PYTEST=(.venv/bin/pytest -p no:cacheprovider --durations=30)
# Every playbook run's time, summed up at the end (hack/playbook_times.py).
export SMI_PLAYBOOK_TIMES="$results/playbooks.tsv"
# Part 1 then the cluster's life cycle (pytest outside the namespaces, on a
# fourth namespace of its own), so that the life cycle is off the critical path.
(
  bash $CLUSTER exec -- "${PYTEST[@]}" --junitxml="$results/part1.xml" tests "${part1_ignores[@]}" \
    >"$results/part1.log" 2>&1
  echo $? >"$results/part1.rc"
  .venv/bin/pytest -p no:cacheprovider --junitxml="$results/lifecycle.xml" tests/lifecycle \
    >"$results/lifecycle.log" 2>&1
  echo $? >"$results/lifecycle.rc"
) &
pid1=$!
"${SECOND[@]}" bash $CLUSTER exec -- "${PYTEST[@]}" --junitxml="$results/part2.xml" "${PART2[@]}" \
  >"$results/part2.log" 2>&1 &
pid2=$!
"${THIRD[@]}" bash $CLUSTER exec -- "${PYTEST[@]}" --junitxml="$results/part3.xml" "${PART3[@]}" \
  >"$results/part3.log" 2>&1 &
pid3=$!
# Progress while the parts run: their last result lines every 60 s.
last() { grep -E '^tests/' "$results/$1.log" | tail -n 1 | cut -c1-70; }
while kill -0 $pid1 2>/dev/null || kill -0 $pid2 2>/dev/null || kill -0 $pid3 2>/dev/null; do
  sleep 60
  printf '[%s] 1: %s | 2: %s | 3: %s\n' "$(date +%H:%M:%S)" "$(last part1)" "$(last part2)" "$(last part3)"
done
wait $pid1
rc1a=$(cat "$results/part1.rc" 2>/dev/null || echo 1)
wait $pid2
rc1b=$?
wait $pid3
rc1c=$?
cat "$results/part1.log" "$results/part2.log" "$results/part3.log"
rc1=$((rc1a || rc1b || rc1c))

step "pytest outside: cluster life cycle (ran after part 1)"
cat "$results/lifecycle.log"
rc2=$(cat "$results/lifecycle.rc" 2>/dev/null || echo 1)

step "summary"
.venv/bin/python hack/playbook_times.py "$SMI_PLAYBOOK_TIMES" 12
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
[ "$rc1" = 0 ] && [ "$rc2" = 0 ]
