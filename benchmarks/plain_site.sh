#!/usr/bin/env bash
# The baseline for benchmarks/bench_site.py: the same steps as site.yml's
# istio_install and bookinfo roles, done with plain helm and kubectl (install,
# wait, apply, wait), without the roles' checks and verifications.
# Run inside the test cluster's namespace (cluster.sh exec). Usage:
#   plain_site.sh CHART_REPO VERSION BOOKINFO_YAML
set -euo pipefail
repo=$1 version=$2 bookinfo=$3
helm upgrade --install istio-base base --repo "$repo" --version "$version" -n istio-system --create-namespace \
  --set global.istioNamespace=istio-system --set defaultRevision=default >/dev/null
kubectl wait --for=condition=Established crd/virtualservices.networking.istio.io crd/gateways.networking.istio.io \
  crd/destinationrules.networking.istio.io crd/peerauthentications.security.istio.io --timeout=120s >/dev/null
helm upgrade --install istiod istiod --repo "$repo" --version "$version" -n istio-system \
  --set profile=demo --set global.istioNamespace=istio-system --set global.hub=docker.io/istio --set global.tag=1.30.4 \
  --set meshConfig.ingressService=istio-ingressgateway --set meshConfig.ingressSelector=ingressgateway >/dev/null
kubectl -n istio-system rollout status deploy/istiod --timeout=120s >/dev/null
until kubectl get mutatingwebhookconfiguration istio-sidecar-injector >/dev/null 2>&1; do sleep 1; done
helm upgrade --install istio-ingressgateway gateway --repo "$repo" --version "$version" -n istio-system \
  --set labels.istio=ingressgateway --set replicaCount=1 --set service.type=LoadBalancer \
  --set autoscaling.enabled=false >/dev/null
kubectl -n istio-system rollout status deploy/istio-ingressgateway --timeout=120s >/dev/null
until [ -n "$(kubectl -n istio-system get svc istio-ingressgateway -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" ]; do
  sleep 1
done
kubectl label namespace default istio-injection=enabled --overwrite >/dev/null
kubectl apply -n default -f "$bookinfo" >/dev/null
for d in details-v1 ratings-v1 reviews-v1 reviews-v2 reviews-v3 productpage-v1; do
  kubectl -n default rollout status "deploy/$d" --timeout=120s >/dev/null
done
