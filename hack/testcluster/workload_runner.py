"""Run the real istiod (pilot-discovery) for every istiod Deployment, as a host process.

Part of the local test cluster. Pods of the cluster never run (KWOK only marks
them Running/Ready), so the istiod Deployment that the ``istiod`` Helm chart
creates would give no webhook. This controller plays the kubelet for istiod
alone: for each Deployment labelled ``app=istiod`` (any namespace, any
revision) whose mesh ConfigMap (``istio[-<rev>]``) and injector ConfigMap
(``istio-sidecar-injector[-<rev>]``) exist, it

1. adds the ClusterIP of the matching Service (``istiod`` or ``istiod-<rev>``,
   named like the Deployment) as a /32 to the loopback interface of the
   cluster's network namespace (``$SMI_SERVICE_IP_IF``, default ``lo``; the
   test machine's kernel has no dummy driver, and an address on lo is local by
   construction: it adds one ``local`` route and no other), so that the
   kube-apiserver, which calls a
   webhook ``clientConfig.service`` at ``https://<clusterIP>:<port>`` with
   TLS server name ``<svc>.<ns>.svc``, reaches it;
2. starts ``pilot-discovery`` with every listener bound to that ClusterIP
   (webhooks on :443, xDS on :15010/:15012, HTTP on :8080, monitoring on
   :15014, ControlZ on :9876), never on 0.0.0.0, so revisions never collide
   and other test servers (127.0.100.x:443) stay free; environment and
   arguments come from the Deployment's ``discovery`` container, the Kubernetes
   identity is the Deployment's ServiceAccount (a TokenRequest token, so the
   chart's RBAC is exercised), cwd is ``$SMI_STATE/istiod/<ns>.<rev>`` and the
   log ``$SMI_STATE/logs/istiod-<rev>.log`` (``istiod-<ns>-<rev>.log`` outside
   istio-system);
3. restarts it when the Deployment's pod template, the two ConfigMaps or the
   Service's ClusterIP change (a Helm upgrade), or when it exits; and stops it
   and removes the address when the Deployment goes away (or is scaled to 0).

Only one pilot-discovery is built (the one of ISTIOD_BUILD_SNAPSHOT in
versions.env, see there why); charts of another Istio version run it too,
which is logged.

Usage: istiod_runner.py KUBECONFIG STATE_DIR
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client, config

TC_DIR = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio"))
IFACE = os.environ.get("SMI_SERVICE_IP_IF", "lo")
POLL_S = 1.0
TOKEN_TTL_S = 24 * 3600
TOKEN_REFRESH_S = 3600
STOP_GRACE_S = 15
# Listeners, all bound to the Service's ClusterIP. The webhook listens on the
# Service port (443) because the apiserver dials the ClusterIP at that port.
LISTEN_FLAGS = {
    "httpsAddr": 443,
    "httpAddr": 8080,
    "grpcAddr": 15010,
    "secureGRPCAddr": 15012,
    "monitoringAddr": 15014,
}
CTRLZ_PORT = 9876
# Flags of the Deployment's args that this runner sets itself.
OWN_FLAGS = set(LISTEN_FLAGS) | {"kubeconfig", "ctrlz_address", "ctrlz_port", "meshConfig", "networksConfig"}


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


def pilot_discovery() -> tuple[Path, str]:
    """The built pilot-discovery binary and the Istio version it is built from."""
    v = versions()
    snapshot = v.get("ISTIOD_BUILD_SNAPSHOT") or v["ISTIO_DEFAULT_SNAPSHOT"]
    pseudo = dict(p.split("=", 1) for p in v["ISTIO_SNAPSHOTS"].split())[snapshot]
    return CACHE / "bin" / f"istiod-{pseudo}" / "pilot-discovery", snapshot


_BUILT_FROM: dict[tuple[str, float], str] = {}


def module_version(binary: Path) -> str:
    """The istio.io/istio module version recorded in the binary's Go build info."""
    key = (str(binary), binary.stat().st_mtime)
    if key not in _BUILT_FROM:
        m = re.search(rb"(?:mod|dep)\tistio\.io/istio\t(v[^\t\n]+)", binary.read_bytes())
        _BUILT_FROM[key] = m.group(1).decode() if m else "unknown"
    return _BUILT_FROM[key]


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


def filter_args(args: list[str]) -> list[str]:
    """The Deployment's args without the flags this runner sets itself."""
    out, skip_next = [], False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        key, value = split_flag(arg)
        if key in OWN_FLAGS:
            skip_next = value is None  # "--flag value" form: all of ours take a value
            continue
        out.append(arg)
    return out


class Instance:
    """One pilot-discovery process for one istiod Deployment."""

    def __init__(self, key: tuple[str, str], state: Path):
        self.key = key
        self.namespace, self.revision = key
        self.state = state
        name = f"istiod-{self.revision}" if self.namespace == "istio-system" else f"istiod-{self.namespace}-{self.revision}"
        self.logfile = state / "logs" / f"{name}.log"
        self.workdir = state / "istiod" / f"{self.namespace}.{self.revision}"
        self.proc: subprocess.Popen | None = None
        self.fingerprint = ""
        self.address = ""
        self.token_at = 0.0
        self.restarts = 0
        self.next_start = 0.0
        self.kill_stale()

    def kill_stale(self) -> None:
        """A pilot-discovery left by an earlier runner of this cluster holds the ports."""
        pidfile = self.workdir / "pid"
        try:
            pid = int(pidfile.read_text())
            if os.readlink(f"/proc/{pid}/exe").endswith("/pilot-discovery"):
                log(f"{self.name()}: killing stale pilot-discovery pid {pid}")
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)

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
        doc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "smistio", "cluster": cluster}],
            "users": [{"name": f"system:serviceaccount:{self.namespace}:{service_account}",
                       "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "smistio", "context": {
                "cluster": "smistio", "user": f"system:serviceaccount:{self.namespace}:{service_account}",
                "namespace": self.namespace}}],
            "current-context": "smistio",
        }
        kc.write_text(yaml.safe_dump(doc))
        kc.chmod(0o600)
        return str(kc)

    def name(self) -> str:
        return f"{self.namespace}/istiod{rev_suffix(self.revision)} (revision {self.revision})"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle ----------------------------------------------------------
    def start(self, desired: dict, core: client.CoreV1Api, admin: dict) -> None:
        binary, built_version = pilot_discovery()
        if not binary.is_file():
            if self.next_start == 0.0 or time.monotonic() >= self.next_start:
                log(f"{self.name()}: {binary} is missing (build it: hack/testcluster/build.sh istiod); retrying")
                self.next_start = time.monotonic() + 10
            return
        dep, container, addr = desired["deployment"], desired["container"], desired["address"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        chart_version = (dep.metadata.labels or {}).get("app.kubernetes.io/version", "unknown")
        pseudo = dict(p.split("=", 1) for p in versions()["ISTIO_SNAPSHOTS"].split())[built_version]
        embedded = module_version(binary)
        if embedded != pseudo:
            log(f"{self.name()}: WARNING: {binary} records istio.io/istio {embedded}, not {pseudo} "
                f"({built_version}); running it anyway")
        if chart_version != built_version:
            log(f"{self.name()}: chart version {chart_version}, but only pilot-discovery {built_version} "
                f"is built: running that one")
        service_account = dep.spec.template.spec.service_account_name or "default"
        kubeconfig = self.write_kubeconfig(core, admin, service_account)
        pod_name = f"{dep.metadata.name}-smistio-host"
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.workdir),
        }
        for e in container.env or []:
            if e.value_from is None:
                env[e.name] = e.value or ""
                continue
            ref = e.value_from
            if ref.field_ref is not None:
                path = ref.field_ref.field_path
                env[e.name] = {
                    "metadata.name": pod_name,
                    "metadata.namespace": self.namespace,
                    "spec.serviceAccountName": service_account,
                    "status.podIP": addr,
                    "status.hostIP": "127.0.0.1",
                    "spec.nodeName": "smistio-host",
                }.get(path, "")
                if path not in ("metadata.name", "metadata.namespace", "spec.serviceAccountName",
                                "status.podIP", "status.hostIP", "spec.nodeName"):
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
        # What this host process needs instead of the pod's mounts.
        env.update({
            "KUBECONFIG": kubeconfig,
            "POD_NAME": pod_name,
            "POD_NAMESPACE": self.namespace,
            "SERVICE_ACCOUNT": service_account,
            "REVISION": env.get("REVISION") or self.revision,
        })
        args = list(container.args or []) or ["discovery"]
        if container.command and not container.args:
            args = list(container.command[1:]) or ["discovery"]
        args = filter_args(args)
        args += [f"--{flag}={addr}:{port}" for flag, port in LISTEN_FLAGS.items()]
        args += [f"--ctrlz_address={addr}", f"--ctrlz_port={CTRLZ_PORT}", f"--kubeconfig={kubeconfig}"]
        add_address(addr)
        with self.logfile.open("a") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} smistio istiod-runner: starting "
                      f"{binary} (Istio {built_version}, module istio.io/istio {embedded}; chart {chart_version}) on {addr}\n"
                      f"===== args: {' '.join(args)}\n")
            out.flush()
            self.proc = subprocess.Popen(
                [str(binary), *args], cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        (self.workdir / "pid").write_text(f"{self.proc.pid}\n")
        self.address = addr
        self.fingerprint = desired["fingerprint"]
        log(f"{self.name()}: started pilot-discovery pid {self.proc.pid} on {addr} "
            f"(webhook https://{addr}:443, log {self.logfile})")

    def stop(self, why: str, keep_address: bool = False) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                log(f"{self.name()}: stopping pilot-discovery pid {self.proc.pid} ({why})")
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        (self.workdir / "pid").unlink(missing_ok=True)
        if self.address and not keep_address:
            del_address(self.address)
            log(f"{self.name()}: removed {self.address} from {IFACE}")
            self.address = ""


def desired_state(apps: client.AppsV1Api, core: client.CoreV1Api) -> dict[tuple[str, str], dict]:
    """What should run: one entry per istiod Deployment that is ready to serve."""
    out: dict[tuple[str, str], dict] = {}
    for dep in apps.list_deployment_for_all_namespaces(label_selector="app=istiod").items:
        if dep.metadata.deletion_timestamp is not None or dep.spec.replicas == 0:
            continue
        ns = dep.metadata.namespace
        containers = dep.spec.template.spec.containers or []
        container = next((c for c in containers if c.name == "discovery"), containers[0] if containers else None)
        if container is None:
            continue
        env = {e.name: e.value for e in container.env or [] if e.value_from is None}
        labels = dep.metadata.labels or {}
        revision = env.get("REVISION") or labels.get("istio.io/rev") or "default"
        suffix = rev_suffix(revision)
        try:
            svc = core.read_namespaced_service(dep.metadata.name, ns)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            try:
                svc = core.read_namespaced_service(f"istiod{suffix}", ns)
            except client.ApiException as exc2:
                if exc2.status != 404:
                    raise
                continue
        addr = svc.spec.cluster_ip
        if not addr or addr == "None":
            continue
        cms = {}
        for cm_name in (f"istio{suffix}", f"istio-sidecar-injector{suffix}"):
            try:
                cms[cm_name] = core.read_namespaced_config_map(cm_name, ns).data or {}
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        if len(cms) < 2:
            continue
        template = apps.api_client.sanitize_for_serialization(dep.spec.template)
        fingerprint = hashlib.sha256(json.dumps(
            {"template": template, "configmaps": cms, "address": addr}, sort_keys=True).encode()).hexdigest()
        out[(ns, revision)] = {"deployment": dep, "container": container, "address": addr,
                               "fingerprint": fingerprint}
    return out


def main() -> int:
    kubeconfig, state = sys.argv[1], Path(sys.argv[2])
    os.environ["SMI_ADMIN_KUBECONFIG"] = kubeconfig
    config.load_kube_config(config_file=kubeconfig)
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    apps, core = client.AppsV1Api(), client.CoreV1Api()
    instances: dict[tuple[str, str], Instance] = {}
    binary, built = pilot_discovery()
    log(f"istiod runner: pilot-discovery {binary} (Istio {built}; "
        f"{'present' if binary.is_file() else 'NOT BUILT YET'}), Service addresses on {IFACE}")
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
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    last_error = ""
    while True:
        try:
            desired = desired_state(apps, core)
            last_error = ""
            for key in [k for k in instances if k not in desired]:
                instances.pop(key).stop("its Deployment, Service or ConfigMaps are gone")
            for key, want in desired.items():
                if key not in instances:
                    instances[key] = Instance(key, state)
                inst = instances[key]
                if inst.proc is not None and inst.fingerprint != want["fingerprint"]:
                    inst.stop("the Deployment, its ConfigMaps or its Service changed",
                              keep_address=inst.address == want["address"])
                    inst.restarts = 0
                if inst.proc is not None and inst.proc.poll() is not None:
                    code = inst.proc.returncode
                    inst.restarts += 1
                    delay = min(30, 2 ** min(inst.restarts, 5))
                    log(f"{inst.name()}: pilot-discovery exited with {code}; restarting in {delay} s "
                        f"(see {inst.logfile})")
                    inst.proc = None
                    inst.next_start = time.monotonic() + delay
                if inst.proc is None and time.monotonic() >= inst.next_start:
                    if inst.address and inst.address != want["address"]:
                        del_address(inst.address)
                        inst.address = ""
                    inst.start(want, core, admin)
                elif inst.running() and time.monotonic() - inst.token_at > TOKEN_REFRESH_S and inst.token_at:
                    sa = want["deployment"].spec.template.spec.service_account_name or "default"
                    inst.write_kubeconfig(core, admin, sa)
        except Exception as exc:  # keep serving through API restarts
            msg = f"{type(exc).__name__}: {exc}"
            if msg != last_error:
                log(f"reconcile failed: {msg}; retrying")
                last_error = msg
            time.sleep(2)
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
