#!/usr/bin/env bash
# The baseline for benchmarks/bench_full_site.py: the tutorial's steps as a
# careful person runs them by hand, one after the other, with plain helm and
# kubectl and the waits each step needs before the next (rollout status,
# kubectl wait, polling for the external IP, the DNS record, the certificate
# and the HTTP/HTTPS answers), without the roles' checks and verifications.
# What it installs matches `make site` on the local test cluster
# (hack/testcluster/site-vars.yml): Istio's charts, Bookinfo, the Gateway and
# VirtualService, STRICT mTLS, cert-manager's chart, an ACME ClusterIssuer with
# DNS-01 (RFC 2136) against the cluster's Pebble and knotd, the A record, the
# Certificate, HTTPS on the Gateway, Istio's addons, and the 80/20 canary of
# reviews. Run inside the test cluster's namespace (cluster.sh exec). Usage:
#   plain_full_site.sh CHART_REPO ISTIO_VERSION MIRROR_ISTIO_DIR CERT_MANAGER_VERSION
set -euo pipefail
repo=$1 version=$2 samples=$3/samples cm_version=$4
acme=${SMI_STATE:?run inside the test cluster: cluster.sh exec}/acme/site-vars.json
host=bookinfo.smistio.test
json() { "$(dirname "$0")/../.venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$acme" "$1"; }
step() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
retry() { # retry SECONDS COMMAND...: until it succeeds, once a second
  local end=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { echo "timed out: $*" >&2; return 1; }
    sleep 1
  done
}

step "Istio: base, istiod, ingress gateway (tutorial step 1)"
helm upgrade --install istio-base base --repo "$repo" --version "$version" -n istio-system --create-namespace \
  --set global.istioNamespace=istio-system --set defaultRevision=default >/dev/null
# (kubectl wait fails at once on a CRD whose status has no conditions yet: retried.)
retry 120 kubectl wait --for=condition=Established crd/virtualservices.networking.istio.io \
  crd/gateways.networking.istio.io crd/destinationrules.networking.istio.io crd/peerauthentications.security.istio.io \
  --timeout=10s
helm upgrade --install istiod istiod --repo "$repo" --version "$version" -n istio-system \
  --set profile=demo --set global.istioNamespace=istio-system --set global.hub=docker.io/istio --set global.tag=1.30.4 \
  --set meshConfig.ingressService=istio-ingressgateway --set meshConfig.ingressSelector=ingressgateway >/dev/null
kubectl -n istio-system rollout status deploy/istiod --timeout=300s >/dev/null
retry 300 kubectl get mutatingwebhookconfiguration istio-sidecar-injector
helm upgrade --install istio-ingressgateway gateway --repo "$repo" --version "$version" -n istio-system \
  --set labels.istio=ingressgateway --set replicaCount=1 --set service.type=LoadBalancer \
  --set autoscaling.enabled=false >/dev/null
kubectl -n istio-system rollout status deploy/istio-ingressgateway --timeout=300s >/dev/null

step "Bookinfo with sidecars (steps 2, 3)"
kubectl label namespace default istio-injection=enabled --overwrite >/dev/null
kubectl apply -n default -f "$samples/bookinfo/platform/kube/bookinfo.yaml" >/dev/null
for d in details-v1 ratings-v1 reviews-v1 reviews-v2 reviews-v3 productpage-v1; do
  kubectl -n default rollout status "deploy/$d" --timeout=300s >/dev/null
done

step "the gateway's external IP (step 4)"
ip=""
for _ in $(seq 1 300); do
  ip=$(kubectl -n istio-system get svc istio-ingressgateway -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [ -n "$ip" ] && break
  sleep 1
done
[ -n "$ip" ] || { echo "no external IP" >&2; exit 1; }

step "the A record $host -> $ip and its wait (step 5)"
zone_server=$(json zone_server)
knsupdate -y "hmac-sha256:$(json tsig_name):$(json tsig_secret)" <<EOF
server $zone_server 53
zone smistio.test.
update delete $host. A
update add $host. 60 A $ip
send
EOF
retry 120 bash -c "kdig +short @$zone_server $host A | grep -qx '$ip'"

step "Gateway and VirtualService, HTTP answered (steps 6 to 8)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["$host"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["$host"]
  gateways: [bookinfo-gateway]
  http:
    - match: [{uri: {exact: /productpage}}, {uri: {prefix: /static}}]
      route: [{destination: {host: productpage, port: {number: 9080}}}]
EOF
retry 120 curl -sf -o /dev/null --max-time 5 --resolve "$host:80:$ip" "http://$host/productpage"

step "STRICT mTLS (step 9)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
EOF

step "cert-manager (step 10)"
# Without the chart's startupapicheck Job, as the role does (its pod would
# never complete on the fake nodes; the ClusterIssuer's apply below is retried
# until the webhook accepts it instead).
helm upgrade --install cert-manager cert-manager --repo "$repo" --version "$cm_version" -n cert-manager \
  --create-namespace --set crds.enabled=true --set startupapicheck.enabled=false \
  --set "dns01RecursiveNameservers=$zone_server:53" --set dns01RecursiveNameserversOnly=true >/dev/null
for d in cert-manager cert-manager-cainjector cert-manager-webhook; do
  kubectl -n cert-manager rollout status "deploy/$d" --timeout=300s >/dev/null
done

step "ClusterIssuer, once the webhook accepts it (step 11)"
kubectl -n cert-manager create secret generic smistio-acme-dns01 --from-literal="tsig-secret=$(json tsig_secret)" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
issuer=$(mktemp)
cat >"$issuer" <<EOF
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: smistio-acme}
spec:
  acme:
    email: mesh-admin@servicemesh-istio.dev
    server: $(json acme_directory)
    caBundle: $(base64 -w0 "$(json acme_ca_bundle)")
    privateKeySecretRef: {name: smistio-acme-account-key}
    solvers:
      - dns01:
          rfc2136:
            nameserver: "$zone_server:53"
            tsigKeyName: $(json tsig_name)
            tsigAlgorithm: HMACSHA256
            tsigSecretSecretRef: {name: smistio-acme-dns01, key: tsig-secret}
EOF
retry 300 kubectl apply -f "$issuer"
rm -f "$issuer"
kubectl wait --for=condition=Ready clusterissuer/smistio-acme --timeout=300s >/dev/null

step "Certificate and its wait (step 12)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: bookinfo-cert, namespace: istio-system}
spec:
  secretName: bookinfo-cert
  issuerRef: {name: smistio-acme, kind: ClusterIssuer, group: cert-manager.io}
  dnsNames: ["$host"]
EOF
kubectl -n istio-system wait --for=condition=Ready certificate/bookinfo-cert --timeout=300s >/dev/null

step "HTTPS on the Gateway, answered (steps 13, 14)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["$host"]
    - port: {number: 443, name: https, protocol: HTTPS}
      tls: {mode: SIMPLE, credentialName: bookinfo-cert}
      hosts: ["$host"]
EOF
retry 120 curl -sf -o /dev/null --max-time 5 --cacert "$(json issuing_roots)" --resolve "$host:443:$ip" \
  "https://$host/productpage"

step "the addons (observability)"
for addon in prometheus grafana kiali jaeger; do
  kubectl apply -f "$samples/addons/$addon.yaml" >/dev/null
done
for d in prometheus grafana kiali jaeger; do
  kubectl -n istio-system rollout status "deploy/$d" --timeout=300s >/dev/null
done

step "canary: reviews v1 80 %, v2 20 % (traffic management)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
    - route:
        - {destination: {host: reviews, subset: v1}, weight: 80}
        - {destination: {host: reviews, subset: v2}, weight: 20}
EOF
step "done"
