#!/usr/bin/env bash
# Builds the local chart repository and file mirror (once per pinned version):
#   charts/: Istio's base, istiod, gateway, cni and ztunnel charts for every
#            snapshot in ISTIO_SNAPSHOTS, and cert-manager's chart, packaged
#            with `helm package` from their Go modules, plus index.yaml;
#   istio/<version>/samples/: upstream's Bookinfo and addon manifests.
# cluster.sh serves the result on http://127.0.0.1:8879/ inside the cluster's
# network namespace; the roles' repository and mirror variables point there.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
HELM="$(bin_dir helm "$HELM_VERSION")/helm"
[ -x "$HELM" ] || die "helm is not built yet; run hack/testcluster/build.sh helm"

key=$(echo "$ISTIO_SNAPSHOTS $CERT_MANAGER_VERSION" | sha256sum | cut -c1-12)
MIRROR="$SMI_CACHE/mirror-$key"
if [ -f "$MIRROR/charts/index.yaml" ]; then
  ln -sfn "$MIRROR" "$SMI_CACHE/mirror"
  log "chart mirror: cached in $MIRROR"
  exit 0
fi
need_go
rm -rf "$MIRROR.tmp"
mkdir -p "$MIRROR.tmp/charts"
export HELM_CACHE_HOME="$MIRROR.tmp/.helm/cache" HELM_CONFIG_HOME="$MIRROR.tmp/.helm/config" HELM_DATA_HOME="$MIRROR.tmp/.helm/data"

module_dir() {
  local dir
  dir=$(cd "$SMI_CACHE" && go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] || die "the Go module proxy did not serve $1@$2"
  echo "$dir"
}

for pair in $ISTIO_SNAPSHOTS; do
  version=${pair%%=*}
  pseudo=${pair#*=}
  log "packaging Istio charts $version (istio.io/istio@$pseudo)"
  src=$(module_dir istio.io/istio "$pseudo")
  for chart in base istio-control/istio-discovery gateway istio-cni ztunnel; do
    # The module cache is read-only and helm package needs no writes; copy to
    # be safe from helm touching Chart.lock.
    tmp=$(mktemp -d)
    cp -r "$src/manifests/charts/$chart" "$tmp/chart"
    chmod -R u+w "$tmp"
    "$HELM" package "$tmp/chart" --version "$version" --app-version "$version" -d "$MIRROR.tmp/charts" >/dev/null
    rm -rf "$tmp"
  done
  dst="$MIRROR.tmp/istio/$version/samples"
  mkdir -p "$dst/bookinfo/platform/kube" "$dst/bookinfo/networking" "$dst/addons"
  cp "$src/samples/bookinfo/platform/kube/bookinfo.yaml" "$dst/bookinfo/platform/kube/"
  cp "$src"/samples/bookinfo/networking/*.yaml "$dst/bookinfo/networking/"
  cp "$src"/samples/addons/*.yaml "$dst/addons/"
  # The CRD schemas the roles' rendered manifests are validated against.
  mkdir -p "$MIRROR.tmp/istio/$version/crds"
  cp "$src/manifests/charts/base/files/crd-all.gen.yaml" "$MIRROR.tmp/istio/$version/crds/"
  chmod -R u+w "$MIRROR.tmp/istio/$version"
done

log "packaging cert-manager chart $CERT_MANAGER_VERSION"
src=$(module_dir github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION")
tmp=$(mktemp -d)
cp -r "$src/deploy/charts/cert-manager" "$tmp/cert-manager"
chmod -R u+w "$tmp"
"$HELM" package "$tmp/cert-manager" --version "$CERT_MANAGER_VERSION" --app-version "$CERT_MANAGER_VERSION" -d "$MIRROR.tmp/charts" >/dev/null
rm -rf "$tmp"

"$HELM" repo index "$MIRROR.tmp/charts" --url http://127.0.0.1:8879/charts
rm -rf "$MIRROR.tmp/.helm"
rm -rf "$MIRROR" && mv "$MIRROR.tmp" "$MIRROR"
ln -sfn "$MIRROR" "$SMI_CACHE/mirror"
charts=("$MIRROR"/charts/*.tgz)
log "chart mirror ready in $MIRROR: ${#charts[@]} charts"
