#!/usr/bin/env bash
# Builds (once, then from cache) every binary of the local test cluster:
# Kubernetes control plane, etcd, KWOK, Helm, istiod, istioctl, cert-manager,
# Pebble, Prometheus.
# Usage: build.sh [component...]
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$SMI_CACHE/src" "$SMI_CACHE/bin"
# One build at a time: a second caller waits here, then finds the binaries cached.
exec 9>"$SMI_CACHE/build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it to finish"
  flock 9
fi
build_marker=$(mktemp)
trap 'rm -f "$build_marker"' EXIT
# Progress of a go build: how many compiled packages went into the build cache.
go_progress() {
  local GOCACHE_DIR
  GOCACHE_DIR=$(go env GOCACHE)
  echo "$(find "$GOCACHE_DIR" -newer "$build_marker" -name '*-d' 2>/dev/null | wc -l) packages compiled"
}

# A throwaway module of our own that requires the upstream module, so that
# `go build` of its commands resolves dependencies the way upstream pinned them.
prepare_module() {
  local dir=$1 req=$2 ver=$3
  need_go # only now: a warm start with cached binaries needs no Go
  mkdir -p "$dir"
  if [ ! -f "$dir/go.sum" ] || ! grep -q "$req $ver" "$dir/go.mod" 2>/dev/null; then
    rm -f "$dir/go.mod" "$dir/go.sum"
    (cd "$dir" && go mod init "smistio.local/build" >/dev/null 2>&1 && go mod edit -require="$req@$ver")
  fi
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION out
  out=$(bin_dir kubernetes "$v")
  if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kube-scheduler" ] && [ -x "$out/kubectl" ]; then
    log "kubernetes $v: cached in $out"
    return
  fi
  local src="$SMI_CACHE/src/kubernetes-$v" minor
  minor=$(echo "$v" | cut -d. -f2)
  prepare_module "$src" k8s.io/kubernetes "$v"
  (cd "$src" && go mod download k8s.io/kubernetes)
  # k8s.io/kubernetes requires its staging modules at v0.0.0; map each to the
  # published v0.<minor>.<patch>, taking the list from upstream's own go.mod.
  local gomod
  gomod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local staging rep=()
  staging=$(awk '$2 == "v0.0.0" && $1 ~ /^k8s.io\// {print $1}' "$gomod")
  for m in $staging; do rep+=("-replace=$m=$m@v0.${v#v1.}"); done
  (cd "$src" && go mod edit "${rep[@]}")
  local ld="-s -w"
  ld+=" -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  # No `go mod tidy`: with no source file of ours it would drop the requirement.
  with_progress "resolving kubernetes $v modules" bash -c "cd '$src' && go get k8s.io/kubernetes@$v && go list -deps k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl >/dev/null"
  grep -q "k8s.io/kubernetes $v" "$src/go.mod" || die "kubernetes module resolved to another version than $v (see $src/go.mod)"
  mkdir -p "$out.tmp"
  touch "$build_marker"
  progress_hint=go_progress with_progress "building kubernetes $v (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl; cold: about 5 min on 2 cores)" \
    bash -c "cd '$src' && go build -trimpath -ldflags '$ld' -o '$out.tmp/' k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_simple() {
  # build_simple NAME MODULE VERSION PACKAGE BINARY [LDFLAGS]
  local name=$1 mod=$2 v=$3 pkg=$4 binary=$5 ld=${6:-}
  local out
  out=$(bin_dir "$name" "$v")
  if [ -x "$out/$binary" ]; then
    log "$name $v: cached in $out"
    return
  fi
  local src="$SMI_CACHE/src/$name-$v"
  prepare_module "$src" "$mod" "$v"
  # Exactly $mod@$v: no fallback to another version when something is not served.
  with_progress "resolving $name $v modules" bash -c "cd '$src' && go get '$pkg@$v'"
  grep -q "^require $mod $v\$\|^	$mod $v\$" "$src/go.mod" || die "$mod resolved to another version than $v (see $src/go.mod)"
  mkdir -p "$out.tmp"
  touch "$build_marker"
  progress_hint=go_progress with_progress "building $name $v" bash -c "cd '$src' && go build -trimpath -ldflags '-s -w $ld' -o '$out.tmp/$binary' $pkg"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  build_simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 etcd
}
build_kwok() {
  build_simple kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
}
build_helm() {
  build_simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}

ISTIO_VERSION_LDFLAGS="-X istio.io/istio/pkg/version.buildVersion=$ISTIOD_BUILD_SNAPSHOT -X istio.io/istio/pkg/version.buildStatus=Clean"

# istiod (pilot-discovery) of the default Istio snapshot, run on the host so
# that the sidecar injection webhook is the real one (see docs/testing.md).
build_istiod() {
  local pseudo
  pseudo=$(istio_build_pseudo)
  build_simple istiod istio.io/istio "$pseudo" istio.io/istio/pilot/cmd/pilot-discovery pilot-discovery \
    "$ISTIO_VERSION_LDFLAGS"
}

# istioctl from the same commit as istiod: `istioctl analyze` is the tests'
# (and the roles') independent check of the configuration (docs/testing.md).
build_istioctl() {
  local pseudo
  pseudo=$(istio_build_pseudo)
  build_simple istioctl istio.io/istio "$pseudo" istio.io/istio/istioctl/cmd/istioctl istioctl \
    "$ISTIO_VERSION_LDFLAGS"
}

# cert-manager's controller, webhook, cainjector and acmesolver, run on the
# host by workload_runner.py for the Deployments the cert-manager chart
# creates. Its go.mod has a replace directive (miekg/dns), which `go install
# module@version` refuses; a module of our own requires it and repeats the
# replace (see CERT_MANAGER_BUILD_VERSION in versions.env for the skew).
build_cert_manager() {
  local v=$CERT_MANAGER_BUILD_VERSION out mod=github.com/cert-manager/cert-manager
  out=$(bin_dir cert-manager "$v")
  local cmds=(controller webhook cainjector acmesolver) c missing=0
  for c in "${cmds[@]}"; do [ -x "$out/$c" ] || missing=1; done
  if [ $missing = 0 ]; then
    log "cert-manager $v: cached in $out"
    return
  fi
  local src="$SMI_CACHE/src/cert-manager-$v"
  prepare_module "$src" "$mod" "$v"
  local gomod
  gomod=$(cd "$src" && go mod download -json "$mod@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # Repeat upstream's replace directives (only miekg/dns in v1.11.5), taken
  # from its go.mod rather than written here.
  local rep=()
  while read -r old oldv _ new newv; do
    rep+=("-replace=$old@$oldv=$new@$newv")
  done < <(sed -n 's/^replace \(.*\)$/\1/p' "$gomod")
  [ ${#rep[@]} -eq 0 ] || (cd "$src" && go mod edit "${rep[@]}")
  local pkgs=() c
  for c in "${cmds[@]}"; do pkgs+=("$mod/cmd/$c"); done
  with_progress "resolving cert-manager $v modules" bash -c "cd '$src' && go get $mod@$v && go list -deps ${pkgs[*]} >/dev/null"
  grep -q "$mod $v" "$src/go.mod" || die "cert-manager module resolved to another version than $v (see $src/go.mod)"
  mkdir -p "$out.tmp"
  touch "$build_marker"
  local ld="-s -w -X $mod/pkg/util.AppVersion=$v -X $mod/pkg/util.AppGitCommit=module-proxy"
  for c in "${cmds[@]}"; do
    progress_hint=go_progress with_progress "building cert-manager $v $c (cold, all four: about 8 CPU-minutes, the controller most of it)" \
      bash -c "cd '$src' && go build -trimpath -ldflags '$ld' -o '$out.tmp/$c' $mod/cmd/$c"
  done
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# Pebble, Let's Encrypt's small ACME test server: the local ACME server that
# cert-manager's ClusterIssuer talks to in the test cluster.
build_pebble() {
  build_simple pebble github.com/letsencrypt/pebble/v2 "$PEBBLE_VERSION" github.com/letsencrypt/pebble/v2/cmd/pebble pebble
}

# Prometheus, at the version Istio's samples/addons/prometheus.yaml pins
# (PROMETHEUS_VERSION, versions.env), for the addon's Deployment. Its go.mod
# has a replace directive, so it is built like cert-manager, in a module of
# our own. Only the Kubernetes service discovery is compiled in (upstream's
# build tags remove_all_sd,enable_kubernetes_sd): the addon's configuration
# uses no other, and the cloud providers' SDKs would double the build. Debian's
# package cannot stand in: it is built without Kubernetes discovery.
build_prometheus() {
  local v=$PROMETHEUS_VERSION mod=github.com/prometheus/prometheus out
  # Prometheus 3.10.0 is published as Go module version v0.310.0.
  local modv
  modv="v0.$(echo "${v#v}" | awk -F. '{printf "%d%02d.%d", $1, $2, $3}')"
  out=$(bin_dir prometheus "$v")
  if [ -x "$out/prometheus" ]; then
    log "Prometheus $v: cached in $out"
    return
  fi
  local src="$SMI_CACHE/src/prometheus-$v"
  prepare_module "$src" "$mod" "$modv"
  local gomod rep=()
  gomod=$(cd "$src" && go mod download -json "$mod@$modv" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  while read -r old _arrow new newv; do
    rep+=("-replace=$old=$new@$newv")
  done < <(sed -n 's/^replace \([^ ]*\) \(=>\) \([^ ]*\) \([^ ]*\)$/\1 \2 \3 \4/p' "$gomod")
  [ ${#rep[@]} -eq 0 ] || (cd "$src" && go mod edit "${rep[@]}")
  with_progress "resolving Prometheus $v ($mod $modv) modules" \
    bash -c "cd '$src' && go get $mod@$modv && go list -tags remove_all_sd,enable_kubernetes_sd -deps $mod/cmd/prometheus >/dev/null"
  grep -q "$mod $modv" "$src/go.mod" || die "Prometheus module resolved to another version than $modv (see $src/go.mod)"
  mkdir -p "$out.tmp"
  touch "$build_marker"
  local ld="-s -w -X github.com/prometheus/common/version.Version=${v#v} -X github.com/prometheus/common/version.Revision=module-proxy -X github.com/prometheus/common/version.Branch=$modv"
  progress_hint=go_progress with_progress "building Prometheus $v (cold: about 10 CPU-minutes, 1600 packages)" \
    bash -c "cd '$src' && go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags '$ld' -o '$out.tmp/prometheus' $mod/cmd/prometheus"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kwok helm kubernetes istiod istioctl cert-manager pebble prometheus)
for c in "${components[@]}"; do
  case "$c" in
    kubernetes | etcd | kwok | helm | istiod | istioctl | pebble | prometheus) "build_$c" ;;
    cert-manager) build_cert_manager ;;
    *) die "unknown component '$c' (known: kubernetes etcd kwok helm istiod istioctl cert-manager pebble prometheus)" ;;
  esac
done
