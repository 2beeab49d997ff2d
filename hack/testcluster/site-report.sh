#!/usr/bin/env bash
# After `make site` on the local test cluster: which steps ran against real
# components and which against a stand-in (and what the stand-in decided).
# Usage: site-report.sh START_EPOCH_SECONDS
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start=${1:-0}
echo
echo "== make site on the local test cluster: what was real, what was a stand-in"
echo "real:      Kubernetes control plane (built from Go), istiod (sidecar injection, validation),"
echo "           cert-manager $CERT_MANAGER_BUILD_VERSION controller/webhook/cainjector for chart $CERT_MANAGER_VERSION,"
echo "           the ClusterIssuer's ACME account and the DNS-01 issuance from Pebble $PEBBLE_VERSION,"
echo "           the RFC 2136 updates and the DNS wait against knotd"
echo "stand-in:  the HTTP check and the served-certificate check went to the gateway stand-in"
echo "           (hack/testcluster/gateway_standin.py: no Envoy runs; it answers from the real"
echo "           Gateway, VirtualService, Service, pods and the credentialName Secret). Its decisions:"
shopt -s nullglob
found=0
for f in "$SMI_STATE"/gateway-standin/*.jsonl; do
  "$REPO_ROOT/.venv/bin/python" - "$f" "$start" <<'PY'
import json, sys
path, start = sys.argv[1], float(sys.argv[2])
for line in open(path):
    e = json.loads(line)
    if e["t"] < start:
        continue
    if "sni" in e:
        print(f"             :443 SNI {e['sni']}: {'handshake' if e['handshake'] else 'REFUSED'} ({e['why']})")
    else:
        print(f"             :{e['port']} {e['host']}{e['path']}: {e['status']} ({e['why']})")
PY
  found=1
done
[ $found = 1 ] || echo "             (none recorded)"
echo "skipped:   the mTLS proof's client calls (mtls_verify_proof: false; no data plane to carry them)"
