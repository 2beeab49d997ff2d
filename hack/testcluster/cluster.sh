#!/usr/bin/env bash
# The local test cluster: a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) built from Go modules, KWOK playing
# the kubelets of fake worker nodes, a LoadBalancer IP controller, and the
# chart/file mirror, all inside the network namespace $SMI_NETNS (loopback only).
#
#   cluster.sh start            build what is missing (cached), start a fresh cluster
#   cluster.sh restart          bring a crashed or stopped cluster back with its data (etcd, PKI kept)
#   cluster.sh reset            empty a running cluster in place (fresh etcd; PKI, ACME lab, mirror kept)
#   cluster.sh stop             stop every process of the cluster, remove the namespace
#   cluster.sh status           what runs, API health, nodes
#   cluster.sh exec -- CMD...   run CMD inside the namespace with KUBECONFIG set
#   cluster.sh kubeconfig       print the kubeconfig path
#
# SMI_PROFILE=instant|realistic (start, reset; default instant) chooses the
# latency profile, SMI_PROFILE_SEED (an integer, default 1) its jitter; both
# are recorded in $SMI_STATE/profile.json for the components, restart keeps
# them (hack/testcluster/latency.py, docs/testing.md).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=${SMI_NODES:-2}
API_PORT=6443
ETCD_PORT=2379
MIRROR_PORT=8879
KUBECONFIG_PATH="$SMI_STATE/kubeconfig"
PKI="$SMI_STATE/pki"
K8S_BIN=$(bin_dir kubernetes "$KUBERNETES_VERSION")
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok lb-controller workload-runner gateway-standin chart-mirror acme-lab)
PROFILE_FILE="$SMI_STATE/profile.json"
# The interface that holds the ClusterIPs and pod IPs (as /32) that
# workload_runner.py serves on: the namespace's loopback (this kernel may have no
# dummy driver; an address on lo is local by construction and adds no route).
SERVICE_IP_IF=lo

in_ns() { ip netns exec "$SMI_NETNS" "$@"; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$SMI_NETNS"; }
kubectl_ns() { in_ns "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

pid_alive() {
  local f="$SMI_STATE/run/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

api_ready() {
  in_ns curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# wait_for DESCRIPTION TIMEOUT_S LOGFILE COMMAND...: poll, report every 10 s,
# and on timeout show the end of the component's log.
wait_for() {
  local what=$1 timeout=$2 logfile=$3
  shift 3
  local start=$SECONDS next=$((SECONDS + 10))
  until "$@"; do
    if ((SECONDS - start >= timeout)); then
      [ -n "$logfile" ] && [ -f "$logfile" ] && { echo "--- last lines of $logfile:" >&2; tail -n 25 "$logfile" >&2; }
      die "timed out after ${timeout}s waiting for $what"
    fi
    if ((SECONDS >= next)); then
      log "  waiting for $what ($((SECONDS - start)) s)"
      next=$((SECONDS + 10))
    fi
    sleep 0.5
  done
}

# launch NAME COMMAND...: start a component in the namespace, in the background.
# The pid file gets the component's own pid (the shell execs it), not the pid
# of a wrapper (ip netns exec, setsid), so that status and kill reach it.
launch() {
  local name=$1
  shift
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  in_ns setsid bash -c 'echo $$ >"$0"; exec "$@"' "$SMI_STATE/run/$name.pid" "$@" \
    >>"$SMI_STATE/logs/$name.log" 2>&1 </dev/null &
}

gen_cert() {
  # gen_cert NAME SUBJECT [SANS]: an ECDSA key and a certificate signed by the test CA.
  local name=$1 subj=$2 sans=${3:-}
  local ext=(-addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature,keyEncipherment")
  [ -n "$sans" ] && ext+=(-addext "subjectAltName=$sans")
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" "${ext[@]}" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -copy_extensions copy -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

write_kubeconfig() {
  # write_kubeconfig FILE CERTNAME
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: smistio
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: smistio
  context:
    cluster: smistio
    user: $2
current-context: smistio
KCFG
  chmod 600 "$1"
}

make_pki() {
  mkdir -p "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=smistio-test-cluster-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  gen_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  gen_cert admin "/O=system:masters/CN=smistio-admin"
  gen_cert controller-manager "/CN=system:kube-controller-manager"
  gen_cert scheduler "/CN=system:kube-scheduler"
  gen_cert kwok "/O=system:masters/CN=kwok-controller"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  write_kubeconfig "$KUBECONFIG_PATH" admin
  write_kubeconfig "$SMI_STATE/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$SMI_STATE/scheduler.kubeconfig" scheduler
  write_kubeconfig "$SMI_STATE/kwok.kubeconfig" kwok
}

# The recorded profile ("instant" when none is recorded).
profile_name() {
  if [ -f "$PROFILE_FILE" ]; then sed -n 's/.*"profile": *"\([a-z]*\)".*/\1/p' "$PROFILE_FILE"; else echo instant; fi
}

# check_profile: SMI_PROFILE and SMI_PROFILE_SEED are valid (or unset).
check_profile() {
  case "${SMI_PROFILE:-instant}" in
    instant | realistic) ;;
    *) die "SMI_PROFILE=$SMI_PROFILE is not a latency profile; use instant (the default) or realistic" ;;
  esac
  [[ "${SMI_PROFILE_SEED:-1}" =~ ^[0-9]{1,9}$ ]] || die "SMI_PROFILE_SEED=$SMI_PROFILE_SEED is not a whole number (0 to 999999999)"
}

# record_profile: write SMI_PROFILE (default: the recorded one, else instant)
# and SMI_PROFILE_SEED (default 1) down for the components.
record_profile() {
  check_profile
  local seed=${SMI_PROFILE_SEED:-1}
  printf '{"profile": "%s", "seed": %d}\n' "${SMI_PROFILE:-$(profile_name)}" "$((10#$seed))" >"$PROFILE_FILE.tmp"
  mv "$PROFILE_FILE.tmp" "$PROFILE_FILE"
}

preflight() {
  need_root
  command -v ip >/dev/null || die "the 'ip' command (iproute2) is missing; install it with: apt-get install iproute2"
  command -v openssl >/dev/null || die "openssl is missing; install it with: apt-get install openssl"
  command -v curl >/dev/null || die "curl is missing; install it with: apt-get install curl"
  [ -x "$REPO_ROOT/.venv/bin/python" ] || die "the Python tool chain is missing; run hack/setup.sh first (or make setup)"
}

cmd_start() {
  preflight
  check_profile
  if ns_exists; then
    if api_ready && pid_alive kube-apiserver; then
      if [ -n "${SMI_PROFILE:-}" ] && [ "$SMI_PROFILE" != "$(profile_name)" ]; then
        die "the test cluster is already running, on the $(profile_name) latency profile; switch it with SMI_PROFILE=$SMI_PROFILE hack/testcluster/cluster.sh reset (an empty cluster), or stop it first"
      fi
      log "the test cluster is already running, $(profile_name) latency profile (hack/testcluster/cluster.sh status for details)"
      return 0
    fi
    die "stale cluster state: network namespace '$SMI_NETNS' exists but the cluster in it is not healthy ($(not_running)); bring it back with its data: hack/testcluster/cluster.sh restart, or throw it away: hack/testcluster/cluster.sh stop"
  fi
  bash "$TC_DIR/build.sh"
  bash "$TC_DIR/mirror.sh"

  rm -rf "$SMI_STATE"
  mkdir -p "$SMI_STATE/logs" "$SMI_STATE/run" "$SMI_STATE/bin"
  record_profile
  ln -sf "$K8S_BIN/kubectl" "$SMI_STATE/bin/kubectl"
  ln -sf "$(bin_dir helm "$HELM_VERSION")/helm" "$SMI_STATE/bin/helm"
  ln -sf "$(bin_dir istioctl "$(istio_build_pseudo)")/istioctl" "$SMI_STATE/bin/istioctl"
  make_pki
  start_components
}

# Components whose pid file names a process that is gone, for messages.
not_running() {
  local c down=()
  for c in "${COMPONENTS[@]}"; do pid_alive "$c" || down+=("$c"); done
  echo "not running: ${down[*]:-none}"
}

# restart: stop whatever still runs (a crashed or half-dead cluster) and start
# every component again on the same state: etcd's data (every object), the
# PKI and kubeconfigs are kept, so the cluster comes back as it was. What is
# not persistent is made again: the ACME lab (Pebble keeps no state: issuers
# register a new account) and the processes the workload runner plays.
cmd_restart() {
  preflight
  if [ ! -d "$SMI_STATE/etcd" ] || [ ! -f "$PKI/ca.crt" ]; then
    die "no cluster state to restart in $SMI_STATE (no etcd data or PKI); start a new cluster with: hack/testcluster/cluster.sh start"
  fi
  if [ -n "${SMI_PROFILE:-}" ] && [ "$SMI_PROFILE" != "$(profile_name)" ]; then
    die "the cluster in $SMI_STATE runs the $(profile_name) latency profile and restart keeps it; change it with SMI_PROFILE=$SMI_PROFILE hack/testcluster/cluster.sh reset (or stop and start)"
  fi
  cmd_stop
  bash "$TC_DIR/build.sh"
  bash "$TC_DIR/mirror.sh"
  rm -rf "$SMI_STATE"/run/*.pid "$SMI_STATE/acme"
  log "restarting on the kept state in $SMI_STATE (etcd data, PKI)"
  start_components
}

start_components() {
  ip netns add "$SMI_NETNS" || die "could not create network namespace '$SMI_NETNS'"
  in_ns ip link set lo up
  log "network namespace '$SMI_NETNS' created (loopback only: $(in_ns ip -brief addr | awk '{print $1}' | tr '\n' ' '))"
  launch_components all
}

# The components that hold cluster state (everything but the ACME lab and the
# chart mirror, which keep none), in the order they stop.
STATEFUL=(pod-latency gateway-standin workload-runner lb-controller kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

# stop_component NAME: TERM, up to 10 s, then KILL; the pid file goes.
stop_component() {
  local f="$SMI_STATE/run/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -TERM "$pid" 2>/dev/null; then
    for i in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# reset: an empty cluster in the same namespace, for a test that must start
# from a fresh cluster while its own process runs inside the namespace (stop
# and start would take the namespace away from under it). Every component
# that holds cluster state stops, with the workloads the runner played; etcd's
# data, the runner's and the stand-ins' work directories and the Service and
# pod addresses go; the same components start again. Kept: the PKI and
# kubeconfigs (clients keep working), the chart mirror, and the ACME lab
# (knotd and Pebble: its TSIG key and CA stay valid for the tests' variables).
cmd_reset() {
  preflight
  if ! ns_exists || ! pid_alive kube-apiserver; then
    die "no running test cluster to reset; start one with: hack/testcluster/cluster.sh start"
  fi
  local t0=$SECONDS c f entry
  # A profile or seed given now replaces the recorded one (checked before anything stops).
  if [ -n "${SMI_PROFILE:-}${SMI_PROFILE_SEED:-}" ]; then
    local recorded
    recorded=$(cat "$PROFILE_FILE" 2>/dev/null || true)
    record_profile
    [ "$recorded" = "$(cat "$PROFILE_FILE")" ] || log "latency profile now: $(cat "$PROFILE_FILE")"
  fi
  for c in "${STATEFUL[@]}"; do stop_component "$c"; done
  for f in "$SMI_STATE"/run/workloads/*.pid; do
    [ -f "$f" ] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  for entry in "$SMI_STATE"/*; do
    case "$(basename "$entry")" in
      acme | bin | logs | pki | run | *kubeconfig | profile.json) ;;
      *) rm -rf "$entry" ;;
    esac
  done
  in_ns ip addr flush dev "$SERVICE_IP_IF" scope global
  log "cluster state removed in $((SECONDS - t0)) s; starting the components again"
  launch_components stateful
}

# launch_components all|stateful: start the components (stateful: not the ACME
# lab and the chart mirror, which still run) and wait until the cluster serves.
launch_components() {
  local t0=$SECONDS

  launch etcd "$(bin_dir etcd "$ETCD_VERSION")/etcd" --name smistio --data-dir "$SMI_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster smistio=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --quota-backend-bytes 2147483648 --unsafe-no-fsync --log-level warn
  wait_for "etcd" 30 "$SMI_STATE/logs/etcd.log" in_ns curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  launch kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --enable-admission-plugins NodeRestriction \
    --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 90 "$SMI_STATE/logs/kube-apiserver.log" api_ready

  launch kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$SMI_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$SMI_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$SMI_STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true --allocate-node-cidrs=false --profiling=false --v=1
  launch kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$SMI_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$SMI_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$SMI_STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1
  local stage stages=() profile
  profile=$(profile_name)
  for stage in "$TC_DIR"/kwok/*.yaml; do
    if [ "$profile" = realistic ] && [ "$(basename "$stage")" = smistio-pod-running.yaml ]; then
      # Pods become Ready at the time the pod annotator gives them.
      mkdir -p "$SMI_STATE/kwok"
      "$REPO_ROOT/.venv/bin/python" "$TC_DIR/latency.py" kwok-stage "$stage" "$SMI_STATE/kwok/$(basename "$stage")"
      stage="$SMI_STATE/kwok/$(basename "$stage")"
    fi
    stages+=(--config "$stage")
  done
  launch kwok "$(bin_dir kwok "$KWOK_VERSION")/kwok" --kubeconfig "$SMI_STATE/kwok.kubeconfig" \
    --manage-all-nodes=true "${stages[@]}" --server-address 127.0.0.1:10247 \
    --cidr 10.244.0.1/16 --node-ip 10.250.0.1
  if [ "$profile" = realistic ]; then
    launch pod-latency "$REPO_ROOT/.venv/bin/python" -u "$TC_DIR/latency.py" annotate "$KUBECONFIG_PATH" "$SMI_STATE"
  fi
  launch lb-controller env SMI_STATE="$SMI_STATE" "$REPO_ROOT/.venv/bin/python" -u "$TC_DIR/lb_controller.py" "$KUBECONFIG_PATH"
  launch workload-runner env SMI_CACHE="$SMI_CACHE" SMI_SERVICE_IP_IF="$SERVICE_IP_IF" \
    "$REPO_ROOT/.venv/bin/python" -u "$TC_DIR/workload_runner.py" "$KUBECONFIG_PATH" "$SMI_STATE"
  # The one stand-in left for a data plane: Istio gateways' Envoy, answering
  # from the real Gateway/VirtualService/Ingress/Secret objects.
  launch gateway-standin "$REPO_ROOT/.venv/bin/python" -u "$TC_DIR/gateway_standin.py" "$KUBECONFIG_PATH" "$SMI_STATE"
  if [ "$1" = all ]; then
    # DNS servers and the ACME server (Pebble) for `make site` (acme_lab.py).
    launch acme-lab env SMI_CACHE="$SMI_CACHE" "$REPO_ROOT/.venv/bin/python" -u "$TC_DIR/acme_lab.py" serve "$SMI_STATE"
    launch chart-mirror "$REPO_ROOT/.venv/bin/python" -m http.server "$MIRROR_PORT" --bind 127.0.0.1 \
      --directory "$(readlink -f "$SMI_CACHE/mirror")"
  fi

  local i nodes=""
  for i in $(seq 1 "$NODES"); do
    nodes+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-worker-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    kubernetes.io/hostname: kwok-worker-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/worker: \"\"
    type: kwok
"
  done
  echo "$nodes" | kubectl_ns apply -f - >/dev/null
  nodes_ready() { [ "$(kubectl_ns get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)" -ge "$NODES" ]; }
  wait_for "$NODES Ready nodes" 60 "$SMI_STATE/logs/kwok.log" nodes_ready
  default_sa() { kubectl_ns -n default get serviceaccount default >/dev/null 2>&1; }
  wait_for "the default ServiceAccount (controller-manager up)" 60 "$SMI_STATE/logs/kube-controller-manager.log" default_sa
  mirror_up() { in_ns curl -sf --max-time 2 "http://127.0.0.1:$MIRROR_PORT/charts/index.yaml" >/dev/null; }
  wait_for "the chart mirror" 20 "$SMI_STATE/logs/chart-mirror.log" mirror_up
  acme_up() { [ -f "$SMI_STATE/acme/site-vars.json" ]; }
  wait_for "the ACME lab (knotd, Pebble)" 30 "$SMI_STATE/logs/acme-lab.log" acme_up
  log "test cluster up in $((SECONDS - t0)) s ($profile latency profile$([ "$profile" = instant ] || echo ", $(cat "$PROFILE_FILE")")): Kubernetes $("$K8S_BIN/kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -1), $NODES nodes, charts at http://127.0.0.1:$MIRROR_PORT/charts"
  log "kubeconfig: $KUBECONFIG_PATH (use it inside the namespace: hack/testcluster/cluster.sh exec -- kubectl get nodes)"
}

cmd_stop() {
  need_root
  local pids
  if ns_exists; then
    pids=$(ip netns pids "$SMI_NETNS" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      log "stopping $(echo "$pids" | wc -w) processes in namespace '$SMI_NETNS'"
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      local i
      for i in $(seq 1 20); do
        pids=$(ip netns pids "$SMI_NETNS" 2>/dev/null || true)
        [ -z "$pids" ] && break
        sleep 0.5
      done
      if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
      fi
      sleep 0.5
    fi
    pids=$(ip netns pids "$SMI_NETNS" 2>/dev/null || true)
    [ -z "$pids" ] || die "processes still running in namespace '$SMI_NETNS': $pids"
    ip netns del "$SMI_NETNS"
    log "test cluster stopped; namespace '$SMI_NETNS' removed"
  else
    log "the test cluster is not running"
  fi
  # Components started outside the namespace by an older run (none expected).
  if [ -d "$SMI_STATE/run" ]; then
    local f
    for f in "$SMI_STATE"/run/*.pid; do
      [ -f "$f" ] || continue
      kill -0 "$(cat "$f")" 2>/dev/null && kill -KILL "$(cat "$f")" 2>/dev/null
      rm -f "$f"
    done
  fi
  return 0
}

cmd_status() {
  need_root
  if ! ns_exists; then
    echo "stopped (no network namespace '$SMI_NETNS')"
    return 3
  fi
  local c rc=0
  [ "$(profile_name)" = instant ] || COMPONENTS+=(pod-latency)
  echo "latency profile: $(profile_name)$([ -f "$PROFILE_FILE" ] && echo " ($(cat "$PROFILE_FILE"))")"
  for c in "${COMPONENTS[@]}"; do
    if pid_alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(cat "$SMI_STATE/run/$c.pid")"; else
      printf '%-24s NOT RUNNING (log: %s)\n' "$c" "$SMI_STATE/logs/$c.log"
      rc=1
    fi
  done
  if api_ready; then echo "API server: ready at https://127.0.0.1:$API_PORT"; else
    echo "API server: NOT READY"
    rc=1
  fi
  local f c
  for f in "$SMI_STATE"/run/workloads/*.pid; do
    [ -f "$f" ] || continue
    c=$(basename "$f" .pid)
    if kill -0 "$(cat "$f")" 2>/dev/null; then printf '  %-46s running (pid %s)\n' "$c" "$(cat "$f")"; else
      printf '  %-46s NOT RUNNING\n' "$c"
    fi
  done
  kubectl_ns get nodes 2>/dev/null || true
  echo "kubeconfig: $KUBECONFIG_PATH"
  [ $rc = 0 ] || echo "not healthy: hack/testcluster/cluster.sh restart brings it back with its data; stop throws it away"
  return $rc
}

cmd_exec() {
  need_root
  ns_exists || die "the test cluster is not running; start it with: hack/testcluster/cluster.sh start"
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "usage: cluster.sh exec -- COMMAND [ARGS...]"
  in_ns env KUBECONFIG="$KUBECONFIG_PATH" SMI_KUBECONFIG="$KUBECONFIG_PATH" SMI_STATE="$SMI_STATE" \
    SMI_CHART_REPO="http://127.0.0.1:$MIRROR_PORT/charts" SMI_FILE_MIRROR="http://127.0.0.1:$MIRROR_PORT" \
    PATH="$SMI_STATE/bin:$PATH" "$@"
}

case "${1:-}" in
  start) cmd_start ;;
  restart) cmd_restart ;;
  reset) cmd_reset ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  exec) shift; cmd_exec "$@" ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 {start|restart|reset|stop|status|exec -- CMD...|kubeconfig}" >&2; exit 2 ;;
esac
