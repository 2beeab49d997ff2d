"""Run the workloads that can run for real as host processes of the test cluster.

Part of the local test cluster. Pods of the cluster never run (KWOK only marks
them Running/Ready), so a Deployment that a chart creates gives no process.
This controller plays the kubelet (and kube-proxy) for a few declared kinds of
Deployment, the WORKLOADS below; adding one is declaring it:

- ``istiod``: every Deployment labelled ``app=istiod`` (any namespace, any
  revision) whose mesh ConfigMap (``istio[-<rev>]``) and injector ConfigMap
  (``istio-sidecar-injector[-<rev>]``) exist runs ``pilot-discovery`` (built
  from ISTIOD_BUILD_SNAPSHOT, see versions.env), every listener bound to the
  ClusterIP of the Service named like the Deployment (``istiod[-<rev>]``):
  webhooks on :443, xDS on :15010/:15012, HTTP on :8080, monitoring on
  :15014, ControlZ on :9876; never on 0.0.0.0, so revisions never collide;
  cwd ``$SMI_STATE/istiod/<ns>.<rev>``, log ``$SMI_STATE/logs/istiod-<rev>.log``
  (``istiod-<ns>-<rev>.log`` outside istio-system);
- ``cert-manager-controller``, ``cert-manager-webhook``,
  ``cert-manager-cainjector``: the Deployments of the cert-manager chart
  (labels ``app.kubernetes.io/component`` and ``app.kubernetes.io/name``) run
  cert-manager's own binaries (CERT_MANAGER_BUILD_VERSION, versions.env: older
  than the chart, the skew is logged); the chart's arguments that the older
  binary does not know are dropped and logged; the webhook listens on its
  container port (10250) and the Service port (443) is forwarded to it;
- ``prometheus``: the Deployment of Istio's Prometheus addon
  (``app.kubernetes.io/name=prometheus``, container ``prometheus-server``)
  runs Debian's ``prometheus`` binary with the addon's ConfigMap (written to
  the work directory; ``kubernetes_sd_configs`` get the ServiceAccount's
  kubeconfig instead of the in-cluster files) and its storage in the work
  directory, listening on the Service's ClusterIP;
- ``kiali-standin``, ``grafana-standin``, ``jaeger-standin``: the
  Deployments of Istio's Kiali, Grafana and Jaeger addons, whose programs
  cannot run here, run ``hack/testcluster/addon_standin.py``: it mounts
  nothing itself, but gets from the runner what the kubelet would give the
  container (the env with secretKeyRef resolved; the ConfigMap and Secret
  volumes written under ``<work dir>/root``) and answers the tools' APIs from
  that (Kiali's auth.strategy, Grafana's anonymous setting, admin password and
  dashboards, Jaeger's query base path).

For each Deployment of those kinds the runner

1. adds the ClusterIPs of the Services that select its pods as /32 to the
   loopback interface of the cluster's network namespace
   (``$SMI_SERVICE_IP_IF``, default ``lo``; the test machine's kernel has no
   dummy driver, and an address on lo is local by construction: it adds one
   ``local`` route and no other), so that the kube-apiserver, which calls a
   webhook ``clientConfig.service`` at ``https://<clusterIP>:<port>`` with TLS
   server name ``<svc>.<ns>.svc``, reaches it; a Service port whose
   targetPort differs is forwarded to the process (what kube-proxy does);
2. for the pod network cases, adds the pod IPs KWOK gave the Deployment's pods
   as /32 too and forwards ``<podIP>:<containerPort>`` to the process, so that
   what Prometheus discovers (pod and endpoint addresses) answers for real;
3. starts the process with the Deployment's container arguments (``$(VAR)``
   expanded as the kubelet does) and environment (fieldRef, resourceFieldRef,
   configMapKeyRef, secretKeyRef resolved), the Kubernetes identity of the
   Deployment's ServiceAccount (a TokenRequest token in a kubeconfig, so the
   chart's RBAC is exercised), cwd ``$SMI_STATE/<workload>/<ns>.<name>``; its
   pid goes to ``pid`` there and to ``$SMI_STATE/run/workloads/<workload>-<ns>-<name>.pid``;
4. restarts it when the Deployment's pod template, the ConfigMaps it reads or
   the Service addresses change (a Helm upgrade), or when it exits; and stops
   it and removes the addresses when the Deployment goes away (or is scaled
   to 0).

On the realistic latency profile (``$STATE_DIR/profile.json``, latency.py)
a Deployment's process starts first after its pod's image pull and container
start (``latency.Profile.pod_delay``, the delay the pod annotator gives its
pod), then takes its own real start-up time; restarts are not delayed.

Usage: workload_runner.py KUBECONFIG STATE_DIR
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import yaml
from kubernetes import client, config

import latency

TC_DIR = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio"))
IFACE = os.environ.get("SMI_SERVICE_IP_IF", "lo")
# The runner reconciles when a watched kind changes (ChangeWatch), at most
# every MIN_INTERVAL_S. Every IDLE_S it looks at its own processes (one that
# exited, a restart that is due, a token to refresh) and reconciles only if
# one needs it, or if FULL_S passed since the last reconcile: a quiet cluster
# costs no listing (three test clusters share 2 cores with the suite).
MIN_INTERVAL_S = 1.0
IDLE_S = 3.0
FULL_S = 30.0
TOKEN_TTL_S = 24 * 3600
TOKEN_REFRESH_S = 3600
STOP_GRACE_S = 15


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def versions() -> dict[str, str]:
    out = {}
    for line in (TC_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value.strip('"')
    return out


def rev_suffix(revision: str) -> str:
    return "" if revision in ("", "default") else f"-{revision}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def ensure_iface() -> None:
    """lo is always there; another name is created as a dummy interface."""
    if ip("link", "show", IFACE, check=False).returncode != 0:
        ip("link", "add", IFACE, "type", "dummy")
        ip("link", "set", "dev", IFACE, "addrgenmode", "none", check=False)
        log(f"created dummy interface {IFACE}")
    ip("link", "set", IFACE, "up")


def add_address(addr: str) -> None:
    ensure_iface()
    res = ip("addr", "add", f"{addr}/32", "dev", IFACE, check=False)
    if res.returncode != 0 and "File exists" not in res.stderr and "already assigned" not in res.stderr:
        raise RuntimeError(f"ip addr add {addr}/32 dev {IFACE}: {res.stderr.strip()}")


def del_address(addr: str) -> None:
    ip("addr", "del", f"{addr}/32", "dev", IFACE, check=False)


def split_flag(arg: str) -> tuple[str | None, str | None]:
    """('name', value-or-None) for a -flag/--flag argument, (None, None) otherwise."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None, None
    name = arg.lstrip("-")
    if "=" in name:
        key, value = name.split("=", 1)
        return key, value
    return name, None


def filter_args(args: list[str], own: set[str]) -> list[str]:
    """The Deployment's args without the flags this runner sets itself."""
    out, skip_next = [], False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        key, value = split_flag(arg)
        if key in own:
            skip_next = value is None  # "--flag value" form: all of ours take a value
            continue
        out.append(arg)
    return out


def expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of a container's command and args."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, arg)


_FLAGS: dict[tuple[str, float], set[str]] = {}


def known_flags(binary: Path) -> set[str]:
    """The long flags a binary's --help lists (cobra/pflag, Go flag, kingpin)."""
    key = (str(binary), binary.stat().st_mtime)
    if key not in _FLAGS:
        res = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False, timeout=30)
        text = res.stdout + res.stderr
        _FLAGS[key] = set(re.findall(r"(?m)^\s*(?:-\w,\s*)?--?(?:\[no-\])?([A-Za-z0-9][\w.\-]*)", text))
    return _FLAGS[key]


def drop_unknown(args: list[str], binary: Path, what: str, name: str) -> list[str]:
    known = known_flags(binary)
    out = []
    for arg in args:
        key, _value = split_flag(arg)
        if key is not None and key not in known and key.removeprefix("no-") not in known:
            log(f"{name}: dropping {arg}: not a flag of {what}")
            continue
        out.append(arg)
    return out


def container_port(container, target) -> int | None:
    """A Service targetPort (number or port name) as the container's port number."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for port in container.ports or []:
        if port.name == target:
            return port.container_port
    return None


def selects(selector: dict | None, labels: dict | None) -> bool:
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


class Forward:
    """A TCP listener relaying every connection to a target (kube-proxy's part)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.listen, self.target = listen, target
        # A listener just closed (the same forward, set up again) can hold
        # the address for a moment: retry for up to 5 s before giving up.
        deadline = time.monotonic() + 5
        while True:
            try:
                self.sock = socket.create_server(listen)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(0.5)
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _peer = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        conn.settimeout(None)

        def pump(src, dst):
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        t.start()
        pump(conn, upstream)
        t.join()
        conn.close()
        upstream.close()

    def close(self) -> None:
        self.closed.set()
        try:  # on Linux this stops the listener at once, even while accept() waits on it
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------
# The declared workloads
# ---------------------------------------------------------------------------

class Workload:
    """One kind of Deployment the runner plays the kubelet for."""

    name = ""             # logs, work directories
    process = ""          # what the process is called in the runner's log
    pod_network = False   # add pod IPs and forward <podIP>:<port> (pod_ports)
    service_forwards = True  # forward a Service port to its targetPort when they differ
    needs_service = False    # wait for a Service selecting the pods before starting

    def deployments(self, apps: client.AppsV1Api) -> list:
        raise NotImplementedError

    def container(self, dep):
        containers = dep.spec.template.spec.containers or []
        return containers[0] if containers else None

    def key(self, dep, container) -> tuple[str, str]:
        return dep.metadata.namespace, dep.metadata.name

    def label(self, key) -> str:
        return f"{key[0]}/{key[1]}"

    def paths(self, state: Path, key) -> tuple[Path, Path]:
        """(log file, work directory)."""
        return state / "logs" / f"{self.name}-{key[0]}-{key[1]}.log", state / self.name / f"{key[0]}.{key[1]}"

    def services(self, core: client.CoreV1Api, dep) -> list | None:
        """The Services whose selector matches the pod template (None: not ready to run)."""
        labels = dep.spec.template.metadata.labels or {}
        return [s for s in core.list_namespaced_service(dep.metadata.namespace).items
                if selects(s.spec.selector, labels) and s.spec.cluster_ip not in (None, "", "None")]

    def inputs(self, core: client.CoreV1Api, dep, container) -> dict | None:
        """ConfigMaps and the like that the process reads (fingerprinted); None: not ready."""
        return {}

    def binary(self) -> tuple[Path, str]:
        """The binary and what it is (a version text for the log)."""
        raise NotImplementedError

    def args(self, inst: Instance, want: dict, binary: Path, env: dict[str, str], kubeconfig: str) -> list[str]:
        raise NotImplementedError

    def extra_env(self, inst: Instance, want: dict, env: dict[str, str]) -> dict[str, str]:
        return {}

    def listen_address(self, want: dict, port: int) -> str:
        """Where the process listens for a container port ('' : all addresses)."""
        return ""

    def start_note(self, want: dict) -> str:
        return ""

    def pod_ports(self, container) -> list[int]:
        """The ports the process serves, reachable on the pod IPs."""
        return [p.container_port for p in container.ports or []]


class Istiod(Workload):
    name = "istiod"
    process = "pilot-discovery"
    pod_network = True
    needs_service = True
    service_forwards = False  # it listens on the Service ports itself
    # Listeners, all bound to the Service's ClusterIP. The webhook listens on
    # the Service port (443) because the apiserver dials the ClusterIP at that port.
    LISTEN_FLAGS = {
        "httpsAddr": 443,
        "httpAddr": 8080,
        "grpcAddr": 15010,
        "secureGRPCAddr": 15012,
        "monitoringAddr": 15014,
    }
    CTRLZ_PORT = 9876
    OWN_FLAGS = set(LISTEN_FLAGS) | {"kubeconfig", "ctrlz_address", "ctrlz_port", "meshConfig", "networksConfig"}
    _built_from: dict[tuple[str, float], str] = {}

    def deployments(self, apps):
        return apps.list_deployment_for_all_namespaces(label_selector="app=istiod").items

    def container(self, dep):
        containers = dep.spec.template.spec.containers or []
        return next((c for c in containers if c.name == "discovery"), containers[0] if containers else None)

    def key(self, dep, container):
        env = {e.name: e.value for e in container.env or [] if e.value_from is None}
        labels = dep.metadata.labels or {}
        return dep.metadata.namespace, env.get("REVISION") or labels.get("istio.io/rev") or "default"

    def label(self, key):
        return f"{key[0]}/istiod{rev_suffix(key[1])} (revision {key[1]})"

    def paths(self, state, key):
        namespace, revision = key
        name = f"istiod-{revision}" if namespace == "istio-system" else f"istiod-{namespace}-{revision}"
        return state / "logs" / f"{name}.log", state / "istiod" / f"{namespace}.{revision}"

    def services(self, core, dep):
        ns = dep.metadata.namespace
        suffix = rev_suffix(self.key(dep, self.container(dep))[1])
        for name in (dep.metadata.name, f"istiod{suffix}"):
            try:
                svc = core.read_namespaced_service(name, ns)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                continue
            if not svc.spec.cluster_ip or svc.spec.cluster_ip == "None":
                return None
            return [svc]
        return None

    def inputs(self, core, dep, container):
        ns, revision = self.key(dep, container)
        suffix = rev_suffix(revision)
        cms = {}
        for cm_name in (f"istio{suffix}", f"istio-sidecar-injector{suffix}"):
            try:
                cms[cm_name] = core.read_namespaced_config_map(cm_name, ns).data or {}
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        return cms if len(cms) == 2 else None

    def snapshot(self) -> tuple[str, str]:
        v = versions()
        snapshot = v.get("ISTIOD_BUILD_SNAPSHOT") or v["ISTIO_DEFAULT_SNAPSHOT"]
        pseudo = dict(p.split("=", 1) for p in v["ISTIO_SNAPSHOTS"].split())[snapshot]
        return snapshot, pseudo

    def binary(self):
        snapshot, pseudo = self.snapshot()
        return CACHE / "bin" / f"istiod-{pseudo}" / "pilot-discovery", f"Istio {snapshot}"

    def module_version(self, binary: Path) -> str:
        """The istio.io/istio module version recorded in the binary's Go build info."""
        key = (str(binary), binary.stat().st_mtime)
        if key not in self._built_from:
            m = re.search(rb"(?:mod|dep)\tistio\.io/istio\t(v[^\t\n]+)", binary.read_bytes())
            self._built_from[key] = m.group(1).decode() if m else "unknown"
        return self._built_from[key]

    def start_note(self, want):
        binary = self.binary()[0]
        snapshot, pseudo = self.snapshot()
        embedded = self.module_version(binary)
        chart_version = (want["deployment"].metadata.labels or {}).get("app.kubernetes.io/version", "unknown")
        name = self.label(want["key"])
        if embedded != pseudo:
            log(f"{name}: WARNING: {binary} records istio.io/istio {embedded}, not {pseudo} "
                f"({snapshot}); running it anyway")
        if chart_version != snapshot:
            log(f"{name}: chart version {chart_version}, but only pilot-discovery {snapshot} "
                f"is built: running that one")
        return f"Istio {snapshot}, module istio.io/istio {embedded}; chart {chart_version}"

    def extra_env(self, inst, want, env):
        return {"SERVICE_ACCOUNT": want["service_account"], "REVISION": env.get("REVISION") or inst.key[1]}

    def args(self, inst, want, binary, env, kubeconfig):
        container, addr = want["container"], want["address"]
        args = list(container.args or []) or ["discovery"]
        if container.command and not container.args:
            args = list(container.command[1:]) or ["discovery"]
        args = filter_args([expand(a, env) for a in args], self.OWN_FLAGS)
        args += [f"--{flag}={addr}:{port}" for flag, port in self.LISTEN_FLAGS.items()]
        args += [f"--ctrlz_address={addr}", f"--ctrlz_port={self.CTRLZ_PORT}", f"--kubeconfig={kubeconfig}"]
        return args

    def listen_address(self, want, port):
        return want["address"]

    def pod_ports(self, container):
        return [*self.LISTEN_FLAGS.values(), self.CTRLZ_PORT]


class CertManager(Workload):
    """One of cert-manager's Deployments, by its chart labels."""

    process_names = {"controller": "controller", "webhook": "webhook", "cainjector": "cainjector"}

    def __init__(self, component: str, chart_name: str):
        self.component, self.chart_name = component, chart_name
        self.name = f"cert-manager-{component}"
        self.process = f"cert-manager {component}"
        self.pod_network = True

    def deployments(self, apps):
        return apps.list_deployment_for_all_namespaces(
            label_selector=f"app.kubernetes.io/component={self.component},app.kubernetes.io/name={self.chart_name}").items

    def binary(self):
        v = versions()["CERT_MANAGER_BUILD_VERSION"]
        return CACHE / "bin" / f"cert-manager-{v}" / self.component, f"cert-manager {v}"

    def start_note(self, want):
        built = versions()["CERT_MANAGER_BUILD_VERSION"]
        chart_version = (want["deployment"].metadata.labels or {}).get("app.kubernetes.io/version", "unknown")
        if chart_version != built:
            log(f"{self.label(want['key'])}: chart version {chart_version}, but only cert-manager {built} "
                f"is buildable from the module proxy: running that one (versions.env)")
        return f"cert-manager {built}; chart {chart_version}"

    def args(self, inst, want, binary, env, kubeconfig):
        container = want["container"]
        args = [expand(a, env) for a in list(container.command or [])[1:] + list(container.args or [])]
        args = filter_args(args, {"kubeconfig"})
        args = drop_unknown(args, binary, self.binary()[1], self.label(want["key"]))
        return [*args, f"--kubeconfig={kubeconfig}"]


class Prometheus(Workload):
    """Istio's Prometheus addon (samples/addons/prometheus.yaml)."""

    name = "prometheus"
    process = "prometheus"
    pod_network = True  # the API server's service proxy dials the pod IP
    needs_service = True
    OWN_FLAGS = {"config.file", "storage.tsdb.path", "web.listen-address", "web.console.libraries",
                 "web.console.templates"}

    def deployments(self, apps):
        return apps.list_deployment_for_all_namespaces(label_selector="app.kubernetes.io/name=prometheus").items

    def container(self, dep):
        containers = dep.spec.template.spec.containers or []
        return next((c for c in containers if c.name == "prometheus-server"), None)

    def binary(self):
        v = versions()["PROMETHEUS_VERSION"]
        return CACHE / "bin" / f"prometheus-{v}" / "prometheus", f"Prometheus {v}"

    def _config_source(self, dep, container) -> tuple[str, str, str] | None:
        """(ConfigMap name, file name, mount path) behind the container's --config.file."""
        cfg = next((split_flag(a)[1] for a in container.args or [] if split_flag(a)[0] == "config.file"), None)
        if not cfg:
            return None
        for mount in container.volume_mounts or []:
            if cfg.startswith(mount.mount_path.rstrip("/") + "/"):
                vol = next((v for v in dep.spec.template.spec.volumes or [] if v.name == mount.name), None)
                if vol is not None and vol.config_map is not None:
                    return vol.config_map.name, cfg[len(mount.mount_path.rstrip("/")) + 1:], mount.mount_path
        return None

    def inputs(self, core, dep, container):
        src = self._config_source(dep, container)
        if src is None:
            return None
        try:
            data = core.read_namespaced_config_map(src[0], dep.metadata.namespace).data or {}
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            return None
        return {"configmap": src[0], "file": src[1], "mount": src[2], "data": data} if src[1] in data else None

    def args(self, inst, want, binary, env, kubeconfig):
        inputs = want["inputs"]
        conf_dir = inst.workdir / "config"
        conf_dir.mkdir(parents=True, exist_ok=True)
        # What the kubelet mounts: the ServiceAccount volume (token, CA,
        # namespace) and the ConfigMap volume, here in the work directory.
        sa_dir = inst.workdir / "serviceaccount"
        sa_dir.mkdir(parents=True, exist_ok=True)
        token = inst.workdir / "token"
        if token.is_file():
            (sa_dir / "token").write_text(token.read_text())
        admin = yaml.safe_load(Path(os.environ["SMI_ADMIN_KUBECONFIG"]).read_text())
        ca = admin["clusters"][0]["cluster"].get("certificate-authority")
        if ca:
            (sa_dir / "ca.crt").write_text(Path(ca).read_text())
        (sa_dir / "namespace").write_text(inst.namespace)
        mount = inputs["mount"].rstrip("/")

        def local(text: str) -> str:
            text = text.replace("/var/run/secrets/kubernetes.io/serviceaccount", str(sa_dir))
            return text.replace(mount + "/", f"{conf_dir}/")

        for name, text in inputs["data"].items():
            (conf_dir / name).write_text(text)
        doc = yaml.safe_load(local(inputs["data"][inputs["file"]])) or {}
        # In a pod, kubernetes_sd_configs find the API server from the
        # in-cluster environment; here they get the same identity as a kubeconfig.
        for job in doc.get("scrape_configs") or []:
            for sd in job.get("kubernetes_sd_configs") or []:
                if "api_server" not in sd and "kubeconfig_file" not in sd:
                    sd["kubeconfig_file"] = kubeconfig
        (conf_dir / inputs["file"]).write_text(yaml.safe_dump(doc, sort_keys=False))
        container = want["container"]
        args = filter_args([expand(a, env) for a in container.args or []], self.OWN_FLAGS)
        args = drop_unknown(args, binary, f"Prometheus {versions()['PROMETHEUS_VERSION']}", self.label(want["key"]))
        port = container_port(container, "9090") or 9090
        return [*args, f"--config.file={conf_dir / inputs['file']}", f"--storage.tsdb.path={inst.workdir / 'data'}",
                f"--web.listen-address={want['address']}:{port}"]

    def listen_address(self, want, port):
        return want["address"]

    def start_note(self, want):
        res = subprocess.run([str(self.binary()[0]), "--version"], capture_output=True, text=True, check=False)
        return (res.stdout + res.stderr).splitlines()[0] if (res.stdout + res.stderr) else "prometheus"


class AddonStandin(Workload):
    """Kiali, Grafana or Jaeger of Istio's addons, answered by addon_standin.py
    from the Deployment's own env and volumes (see the module docstring)."""

    pod_network = True  # the API server's service proxy dials the pod IP
    needs_service = True

    def __init__(self, tool: str, selector: str, container: str, ports: list[int]):
        self.tool, self.selector, self.container_name, self.ports = tool, selector, container, ports
        self.name = f"{tool}-standin"
        self.process = f"{tool} stand-in"

    def deployments(self, apps):
        return apps.list_deployment_for_all_namespaces(label_selector=self.selector).items

    def container(self, dep):
        containers = dep.spec.template.spec.containers or []
        return next((c for c in containers if c.name == self.container_name), None)

    def binary(self):
        return Path(sys.executable), f"{self.tool} stand-in (hack/testcluster/addon_standin.py)"

    def inputs(self, core, dep, container):
        """The ConfigMap and Secret volumes the container mounts, as files."""
        volumes = {v.name: v for v in dep.spec.template.spec.volumes or []}
        mounts = []
        for mount in container.volume_mounts or []:
            vol = volumes.get(mount.name)
            if vol is None or (vol.config_map is None and vol.secret is None):
                continue
            optional = bool((vol.config_map or vol.secret).optional)
            try:
                if vol.config_map is not None:
                    src = vol.config_map
                    files = core.read_namespaced_config_map(src.name, dep.metadata.namespace).data or {}
                else:
                    src = vol.secret
                    raw = core.read_namespaced_secret(src.secret_name, dep.metadata.namespace).data or {}
                    files = {k: base64.b64decode(v).decode(errors="replace") for k, v in raw.items()}
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                if optional:
                    continue
                return None  # the kubelet would not start the pod either
            if src.items:
                files = {i.path: files[i.key] for i in src.items if i.key in files}
            mounts.append({"path": mount.mount_path, "sub_path": mount.sub_path or "", "files": files})
        return {"mounts": mounts}

    def args(self, inst, want, binary, env, kubeconfig):
        root = inst.workdir / "root"
        for mount in want["inputs"]["mounts"]:
            target = root / mount["path"].lstrip("/")
            if mount["sub_path"]:
                if mount["sub_path"] in mount["files"]:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(mount["files"][mount["sub_path"]])
                continue
            target.mkdir(parents=True, exist_ok=True)
            for name, text in mount["files"].items():
                (target / name).write_text(text)
        return [str(TC_DIR / "addon_standin.py"), "--tool", self.tool, "--root", str(root),
                "--listen", want["address"], "--namespace", inst.namespace,
                *[a for port in self.ports for a in ("--port", str(port))]]

    def listen_address(self, want, port):
        return want["address"]

    def pod_ports(self, container):
        return self.ports


WORKLOADS: list[Workload] = [
    Istiod(),
    CertManager("controller", "cert-manager"),
    CertManager("webhook", "webhook"),
    CertManager("cainjector", "cainjector"),
    Prometheus(),
    AddonStandin("kiali", "app.kubernetes.io/name=kiali", "kiali", [20001]),
    AddonStandin("grafana", "app.kubernetes.io/name=grafana", "grafana", [3000]),
    AddonStandin("jaeger", "app=jaeger", "jaeger", [16686, 13133]),
]


# ---------------------------------------------------------------------------
# One process for one Deployment
# ---------------------------------------------------------------------------

class Instance:
    def __init__(self, workload: Workload, key: tuple[str, str], state: Path):
        self.workload, self.key, self.state = workload, key, state
        self.namespace = key[0]
        self.logfile, self.workdir = workload.paths(state, key)
        self.runpid = state / "run" / "workloads" / f"{workload.name}-{key[0]}-{key[1]}.pid"
        self.proc: subprocess.Popen | None = None
        self.fingerprint = ""
        self.addresses: list[str] = []
        self.forwards: list[Forward] = []
        self.token_at = 0.0
        self.restarts = 0
        self.next_start = 0.0
        self.kill_stale()

    def name(self) -> str:
        return self.workload.label(self.key)

    def kill_stale(self) -> None:
        """A process left by an earlier runner of this cluster holds the ports."""
        pidfile = self.workdir / "pid"
        try:
            pid = int(pidfile.read_text())
            binary = self.workload.binary()[0]
            if os.path.realpath(os.readlink(f"/proc/{pid}/exe")) == os.path.realpath(binary):
                log(f"{self.name()}: killing stale {self.workload.process} pid {pid}")
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)
        self.runpid.unlink(missing_ok=True)

    # -- identity -----------------------------------------------------------
    def write_kubeconfig(self, core: client.CoreV1Api, admin: dict, service_account: str) -> str:
        """A kubeconfig with the ServiceAccount's token (reloaded from tokenFile by
        client-go); the admin kubeconfig if the token cannot be had."""
        kc = self.workdir / "kubeconfig"
        token_file = self.workdir / "token"
        try:
            tr = core.create_namespaced_service_account_token(
                service_account, self.namespace,
                client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                    audiences=[], expiration_seconds=TOKEN_TTL_S)),
            )
            tmp = token_file.with_suffix(".tmp")
            tmp.write_text(tr.status.token)
            tmp.chmod(0o600)
            tmp.replace(token_file)
            self.token_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001
            log(f"{self.name()}: no token for ServiceAccount {service_account} ({exc}); using the admin kubeconfig")
            return os.environ["SMI_ADMIN_KUBECONFIG"]
        cluster = admin["clusters"][0]["cluster"]
        user = f"system:serviceaccount:{self.namespace}:{service_account}"
        doc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "smistio", "cluster": cluster}],
            "users": [{"name": user, "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "smistio", "context": {"cluster": "smistio", "user": user,
                                                         "namespace": self.namespace}}],
            "current-context": "smistio",
        }
        kc.write_text(yaml.safe_dump(doc))
        kc.chmod(0o600)
        return str(kc)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def needs_reconcile(self, now: float) -> bool:
        """What the reconcile acts on for this process without a watch event:
        it exited, its (re)start is due, or its token is due for a refresh."""
        if self.proc is None:
            return now >= self.next_start
        if self.proc.poll() is not None:
            return True
        return bool(self.token_at) and now - self.token_at > TOKEN_REFRESH_S

    def env(self, want: dict, core: client.CoreV1Api) -> dict[str, str]:
        dep, container = want["deployment"], want["container"]
        pod_name = f"{dep.metadata.name}-smistio-host"
        fields = {
            "metadata.name": pod_name,
            "metadata.namespace": self.namespace,
            "spec.serviceAccountName": want["service_account"],
            "status.podIP": want["address"],
            "status.hostIP": "127.0.0.1",
            "spec.nodeName": "smistio-host",
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.workdir),
        }
        for e in container.env or []:
            if e.value_from is None:
                env[e.name] = expand(e.value or "", env)
                continue
            ref = e.value_from
            if ref.field_ref is not None:
                path = ref.field_ref.field_path
                env[e.name] = fields.get(path, "")
                if path not in fields:
                    log(f"{self.name()}: env {e.name} from fieldRef {path}: not supported, left empty")
            elif ref.resource_field_ref is not None:
                # limits.cpu and the like: what the host has.
                env[e.name] = str(os.cpu_count() or 1) if "cpu" in ref.resource_field_ref.resource else ""
            elif ref.config_map_key_ref is not None:
                r = ref.config_map_key_ref
                try:
                    env[e.name] = (core.read_namespaced_config_map(r.name, self.namespace).data or {}).get(r.key, "")
                except Exception:  # noqa: BLE001
                    env[e.name] = ""
            elif ref.secret_key_ref is not None:
                r = ref.secret_key_ref
                try:
                    data = core.read_namespaced_secret(r.name, self.namespace).data or {}
                    env[e.name] = base64.b64decode(data.get(r.key, "")).decode()
                except Exception:  # noqa: BLE001
                    env[e.name] = ""
        return env

    # -- lifecycle ----------------------------------------------------------
    def start(self, want: dict, core: client.CoreV1Api, admin: dict) -> None:
        wl = self.workload
        binary, what = wl.binary()
        if not binary.is_file():
            if self.next_start == 0.0 or time.monotonic() >= self.next_start:
                log(f"{self.name()}: {binary} is missing (build it: hack/testcluster/build.sh, or hack/setup.sh "
                    f"for Debian packages); retrying")
                self.next_start = time.monotonic() + 10
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        note = wl.start_note(want)
        kubeconfig = self.write_kubeconfig(core, admin, want["service_account"])
        env = self.env(want, core)
        env.update({
            "KUBECONFIG": kubeconfig,
            "POD_NAME": f"{want['deployment'].metadata.name}-smistio-host",
            "POD_NAMESPACE": self.namespace,
        })
        env.update(wl.extra_env(self, want, env))
        args = wl.args(self, want, binary, env, kubeconfig)
        self.set_network(want)
        with self.logfile.open("a") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} smistio workload-runner: starting "
                      f"{binary} ({note}) on {want['address']}\n"
                      f"===== args: {' '.join(args)}\n")
            out.flush()
            self.proc = subprocess.Popen(
                [str(binary), *args], cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        (self.workdir / "pid").write_text(f"{self.proc.pid}\n")
        self.runpid.parent.mkdir(parents=True, exist_ok=True)
        self.runpid.write_text(f"{self.proc.pid}\n")
        self.fingerprint = want["fingerprint"]
        log(f"{self.name()}: started {wl.process} pid {self.proc.pid} on {want['address']} "
            f"({', '.join(want['endpoints'])}; log {self.logfile})")

    def set_network(self, want: dict) -> None:
        """Service and pod addresses on lo; forwards where a port is not served as is.
        A forward that is still wanted keeps its listener (closing and binding
        it again races with the old listener's release)."""
        wanted_forwards = [(tuple(listen), tuple(target)) for listen, target in want["forwards"]]
        kept = [f for f in self.forwards if (f.listen, f.target) in wanted_forwards]
        for fwd in self.forwards:
            if fwd not in kept:
                fwd.close()
        self.forwards = kept
        wanted = list(dict.fromkeys([*want["service_ips"], *want["pod_ips"]]))
        for addr in self.addresses:
            if addr not in wanted:
                del_address(addr)
        for addr in wanted:
            add_address(addr)
        self.addresses = wanted
        for listen, target in wanted_forwards:
            if any((f.listen, f.target) == (listen, target) for f in kept):
                continue
            try:
                self.forwards.append(Forward(listen, target))
            except OSError as exc:
                log(f"{self.name()}: cannot forward {listen[0]}:{listen[1]} to {target[0]}:{target[1]}: {exc}")

    def clear_forwards(self) -> None:
        for fwd in self.forwards:
            fwd.close()
        self.forwards = []

    def stop(self, why: str, keep_network: bool = False) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                log(f"{self.name()}: stopping {self.workload.process} pid {self.proc.pid} ({why})")
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        (self.workdir / "pid").unlink(missing_ok=True)
        self.runpid.unlink(missing_ok=True)
        if not keep_network:
            self.clear_forwards()
            for addr in self.addresses:
                del_address(addr)
                log(f"{self.name()}: removed {addr} from {IFACE}")
            self.addresses = []


class ChangeWatch:
    """Sets ``changed`` whenever a Deployment, Service, Pod, ConfigMap or
    Secret changes anywhere (but a leader-election lock): one watch per kind,
    restarted from a fresh list when the API server ends it; the reconcile
    reads what it needs itself."""

    def __init__(self, apps: client.AppsV1Api, core: client.CoreV1Api):
        self.changed = threading.Event()
        kinds = {"deployments": apps.list_deployment_for_all_namespaces,
                 "services": core.list_service_for_all_namespaces,
                 "pods": core.list_pod_for_all_namespaces,
                 "configmaps": core.list_config_map_for_all_namespaces,
                 "secrets": core.list_secret_for_all_namespaces}
        for name, lister in kinds.items():
            threading.Thread(target=self._watch, args=(name, lister), name=f"watch-{name}", daemon=True).start()

    @staticmethod
    def is_lock_renewal(line: bytes) -> bool:
        """A leader-election lock kept in a ConfigMap (istiod renews three
        every few seconds): no workload reads it."""
        try:
            meta = json.loads(line)["object"]["metadata"]
        except (ValueError, KeyError, TypeError):
            return False
        return "control-plane.alpha.kubernetes.io/leader" in (meta.get("annotations") or {})

    def _watch(self, name: str, lister) -> None:
        last_error = ""
        while True:
            try:
                listed = json.loads(lister(limit=1, _preload_content=False).data)
                stream = lister(watch=True, resource_version=listed["metadata"]["resourceVersion"],
                                timeout_seconds=240, _preload_content=False)
                last_error = ""
                for line in stream:  # one event per line
                    if not self.is_lock_renewal(line):
                        self.changed.set()
            except Exception as exc:  # API server restarting: the loop's IDLE_S reconcile covers the gap
                msg = f"{type(exc).__name__}: {exc}"
                if msg != last_error:
                    log(f"watch of {name} failed: {msg}; retrying")
                    last_error = msg
                time.sleep(2)
            self.changed.set()  # whatever happened while no watch was open


class ListedOnce:
    """One reconcile's view of Deployments and Services: each listed once from
    the API server and filtered here by the equality selectors the workloads
    use (``k=v,k=v``), instead of one listing per workload and Deployment.
    Everything else goes to the real client."""

    def __init__(self, api):
        self._api = api
        self._deployments = None
        self._services: dict[str, list] = {}

    def __getattr__(self, name):
        return getattr(self._api, name)

    def list_deployment_for_all_namespaces(self, label_selector: str = ""):
        if self._deployments is None:
            self._deployments = self._api.list_deployment_for_all_namespaces().items
        want = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return SimpleNamespace(items=[d for d in self._deployments
                                      if all((d.metadata.labels or {}).get(k) == v for k, v in want.items())])

    def list_namespaced_service(self, namespace: str):
        if namespace not in self._services:
            self._services[namespace] = self._api.list_namespaced_service(namespace).items
        return SimpleNamespace(items=self._services[namespace])


def desired_state(apps: client.AppsV1Api, core: client.CoreV1Api) -> dict[tuple[str, tuple[str, str]], dict]:
    """What should run: one entry per declared Deployment that is ready to serve."""
    out: dict[tuple[str, tuple[str, str]], dict] = {}
    for wl in WORKLOADS:
        for dep in wl.deployments(apps):
            if dep.metadata.deletion_timestamp is not None or dep.spec.replicas == 0:
                continue
            container = wl.container(dep)
            if container is None:
                continue
            services = wl.services(core, dep)
            if services is None or (not services and wl.needs_service):
                continue
            inputs = wl.inputs(core, dep, container)
            if inputs is None:
                continue
            key = wl.key(dep, container)
            addr = services[0].spec.cluster_ip if services else ""
            forwards, endpoints = [], []
            for svc in services:
                for port in svc.spec.ports or []:
                    target = container_port(container, port.target_port if port.target_port is not None else port.port)
                    if target is None:
                        continue
                    bound = wl.listen_address({"address": addr}, target)
                    endpoints.append(f"{svc.spec.cluster_ip}:{port.port}")
                    if wl.service_forwards and (target != port.port or (bound and bound != svc.spec.cluster_ip)):
                        forwards.append(((svc.spec.cluster_ip, port.port), (bound or "127.0.0.1", target)))
            pod_ips = []
            if wl.pod_network:
                selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
                for pod in core.list_namespaced_pod(dep.metadata.namespace, label_selector=selector).items:
                    pod_ip = pod.status.pod_ip if pod.status else None
                    if not pod_ip or pod.metadata.deletion_timestamp is not None:
                        continue
                    pod_ips.append(pod_ip)
                    for port in wl.pod_ports(container):
                        bound = wl.listen_address({"address": addr}, port)
                        if bound:
                            forwards.append(((pod_ip, port), (bound, port)))
            pod_ips.sort()
            addr = addr or (pod_ips[0] if pod_ips else "127.0.0.1")  # status.podIP of a pod with no Service
            template = apps.api_client.sanitize_for_serialization(dep.spec.template)
            fingerprint = hashlib.sha256(json.dumps(
                {"template": template, "inputs": inputs, "address": addr,
                 "services": sorted(s.spec.cluster_ip for s in services)},
                sort_keys=True, default=str).encode()).hexdigest()
            out[(wl.name, key)] = {
                "key": key, "workload": wl, "deployment": dep, "container": container, "address": addr,
                "service_ips": [s.spec.cluster_ip for s in services], "pod_ips": pod_ips, "forwards": forwards,
                "endpoints": endpoints, "inputs": inputs, "fingerprint": fingerprint,
                "service_account": dep.spec.template.spec.service_account_name or "default",
            }
    return out


def main() -> int:
    kubeconfig, state = sys.argv[1], Path(sys.argv[2])
    os.environ["SMI_ADMIN_KUBECONFIG"] = kubeconfig
    config.load_kube_config(config_file=kubeconfig)
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    apps, core = client.AppsV1Api(), client.CoreV1Api()
    profile = latency.load(state)
    instances: dict[tuple[str, tuple[str, str]], Instance] = {}
    for wl in WORKLOADS:
        binary, what = wl.binary()
        log(f"workload runner: {wl.name}: {binary} ({what}; {'present' if binary.is_file() else 'NOT BUILT YET'})")
    log(f"workload runner: Service and pod addresses on {IFACE}; {profile.name} latency profile")
    ensure_iface()

    def shutdown(_sig, _frame):
        for inst in instances.values():
            if inst.proc is not None and inst.proc.poll() is None:
                inst.proc.terminate()
        deadline = time.monotonic() + 5
        for inst in instances.values():
            if inst.proc is not None:
                try:
                    inst.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    inst.proc.kill()
            inst.runpid.unlink(missing_ok=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    last_error = ""
    watch = ChangeWatch(apps, core)
    last_full = 0.0
    while True:
        started = time.monotonic()
        if (not watch.changed.is_set() and started - last_full < FULL_S
                and not any(inst.needs_reconcile(started) for inst in instances.values())):
            watch.changed.wait(IDLE_S)  # nothing changed and none of the processes needs anything
            continue
        last_full = started
        watch.changed.clear()  # a change during this reconcile sets it again: one more round
        try:
            desired = desired_state(ListedOnce(apps), ListedOnce(core))
            last_error = ""
            for key in [k for k in instances if k not in desired]:
                instances.pop(key).stop("its Deployment, Service or inputs are gone")
            for key, want in desired.items():
                if key not in instances:
                    instances[key] = Instance(want["workload"], want["key"], state)
                    dep = want["deployment"]
                    delay, why = profile.pod_delay(dep.metadata.namespace, dep.metadata.name,
                                                   latency.pod_images(dep.spec.template.spec))
                    if delay:
                        instances[key].next_start = time.monotonic() + delay
                        log(f"{instances[key].name()}: starting in {delay:.1f} s ({profile.name} profile: {why})")
                inst = instances[key]
                if inst.proc is not None and inst.fingerprint != want["fingerprint"]:
                    inst.stop("the Deployment, its inputs or its Service changed", keep_network=True)
                    inst.restarts = 0
                elif inst.running() and (sorted(inst.addresses) != sorted(dict.fromkeys(
                        [*want["service_ips"], *want["pod_ips"]]))):
                    inst.set_network(want)  # pods came or went (KWOK gives new pod IPs)
                if inst.proc is not None and inst.proc.poll() is not None:
                    code = inst.proc.returncode
                    inst.restarts += 1
                    delay = min(30, 2 ** min(inst.restarts, 5))
                    log(f"{inst.name()}: {inst.workload.process} exited with {code}; restarting in {delay} s "
                        f"(see {inst.logfile})")
                    inst.proc = None
                    inst.next_start = time.monotonic() + delay
                if inst.proc is None and time.monotonic() >= inst.next_start:
                    inst.start(want, core, admin)
                elif inst.running() and time.monotonic() - inst.token_at > TOKEN_REFRESH_S and inst.token_at:
                    inst.write_kubeconfig(core, admin, want["service_account"])
        except Exception as exc:  # keep serving through API restarts
            msg = f"{type(exc).__name__}: {exc}"
            if msg != last_error:
                log(f"reconcile failed: {msg}; retrying")
                last_error = msg
            last_full = 0.0  # try again at the next round
            time.sleep(2)
        due = [inst.next_start for inst in instances.values() if inst.proc is None]
        timeout = min([IDLE_S, *(max(0.0, t - time.monotonic()) for t in due)])
        watch.changed.wait(timeout)
        time.sleep(max(0.0, MIN_INTERVAL_S - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main())
