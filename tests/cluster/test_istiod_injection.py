"""Sidecar injection and config validation by the real istiod.

The ``base`` and ``istiod`` charts are installed with Helm into istio-system.
KWOK runs no container, so hack/testcluster/workload_runner.py starts the real
``pilot-discovery`` (built from the pinned istio.io/istio snapshot) as a host
process inside the cluster's network namespace, listening on the istiod
Service's ClusterIP (added as a /32 to the namespace's loopback). The
kube-apiserver calls the chart's webhooks through the normal Service path
(``https://<clusterIP>:443``, TLS server name ``istiod.istio-system.svc``);
what comes back is istiod's own: the injection template of the chart's
ConfigMap, istiod's self-signed CA in the webhook caBundles, istiod's
validation. What is not real: no Envoy ever runs; KWOK marks the injected
``istio-proxy`` Ready.

Everything the test installs is removed afterwards (releases, the CRDs the
base chart keeps, istio-system, the istio-ca-root-cert/istio-ca-crl
ConfigMaps istiod writes), so later tests start from a clean cluster.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from conftest import CHART_REPO, ISTIO_VERSION, VERSIONS, assert_istio_analyze_clean, eventually

ISTIO_NS = "istio-system"
BASE_RELEASE = "smistio-inj-base"
ISTIOD_RELEASE = "smistio-inj-istiod"
SERVICE_IP_IF = "lo"
START_TIMEOUT_S = 300  # a cold pilot-discovery start on 2 busy cores
PRODUCTPAGE_IMAGE = "docker.io/istio/examples-bookinfo-productpage-v1:1.20.3"


def helm(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["helm", *args], capture_output=True, text=True, check=False, timeout=timeout)


def state_dir() -> Path:
    """The cluster's state dir ($SMI_STATE): where the kubeconfig lives."""
    return Path(os.environ["SMI_KUBECONFIG"]).resolve().parent


def istiod_pid() -> int | None:
    pidfile = state_dir() / "istiod" / f"{ISTIO_NS}.default" / "pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def service_if_addresses() -> list[dict]:
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", SERVICE_IP_IF], capture_output=True, text=True, check=True)
    return [a for link in json.loads(out.stdout) for a in link.get("addr_info", [])]


def http_get(url: str, timeout: float = 2) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local test URL)
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def ready(addr: str) -> bool:
    try:
        return http_get(f"http://{addr}:8080/ready")[0] == 200
    except OSError:
        return False


def webhook_ca_bundles(k8s, kind: str, name: str) -> list[bytes]:
    adm = client.AdmissionregistrationV1Api(k8s)
    read = (adm.read_mutating_webhook_configuration if kind == "mutating"
            else adm.read_validating_webhook_configuration)
    cfg = read(name)
    return [base64.b64decode(w.client_config.ca_bundle) if w.client_config.ca_bundle else b"" for w in cfg.webhooks]


def uninstall_everything(k8s) -> None:
    """Remove all that the test (and the istiod it ran) left; idempotent."""
    core = client.CoreV1Api(k8s)
    for release in (ISTIOD_RELEASE, BASE_RELEASE):
        helm("uninstall", release, "-n", ISTIO_NS, "--wait", "--timeout", "2m")
    # The runner stops pilot-discovery once the Deployment is gone; wait for
    # it, or it would write istio-ca-root-cert again after we delete it.
    deadline = time.monotonic() + 60
    while istiod_pid() is not None and time.monotonic() < deadline:
        time.sleep(1)
    ext = client.ApiextensionsV1Api(k8s)
    for crd in ext.list_custom_resource_definition().items:
        if (crd.metadata.annotations or {}).get("meta.helm.sh/release-name") == BASE_RELEASE:
            ext.delete_custom_resource_definition(crd.metadata.name)
    adm = client.AdmissionregistrationV1Api(k8s)
    for name in ("istio-sidecar-injector",):
        try:
            adm.delete_mutating_webhook_configuration(name)
        except client.ApiException:
            pass
    for name in ("istio-validator-istio-system", "istiod-default-validator"):
        try:
            adm.delete_validating_webhook_configuration(name)
        except client.ApiException:
            pass
    # istiod's namespace controllers write these into every namespace.
    for cm in core.list_config_map_for_all_namespaces(label_selector="istio.io/config=true").items:
        if not cm.metadata.name.startswith("istio-ca-"):
            continue
        try:
            core.delete_namespaced_config_map(cm.metadata.name, cm.metadata.namespace)
        except client.ApiException:
            pass
    try:
        core.delete_namespace(ISTIO_NS)
    except client.ApiException as exc:
        if exc.status != 404:
            raise

    def gone():
        try:
            core.read_namespace(ISTIO_NS)
            return False
        except client.ApiException as exc:
            return exc.status == 404

    deadline = time.monotonic() + 120
    while not gone() and time.monotonic() < deadline:
        time.sleep(1)


@pytest.fixture(scope="module")
def istiod(k8s):
    """base + istiod charts installed; yields what the test needs to know."""
    core = client.CoreV1Api(k8s)
    uninstall_everything(k8s)  # leftovers of an interrupted run
    ext = client.ApiextensionsV1Api(k8s)

    def istio_crds():
        return [c for c in ext.list_custom_resource_definition().items if c.spec.group.endswith("istio.io")]

    # CRDs another test deleted may still be terminating; Helm cannot adopt them.
    eventually("Istio CRDs being deleted to be gone",
               lambda: not any(c.metadata.deletion_timestamp for c in istio_crds()), 120)
    foreign = sorted({(c.metadata.annotations or {}).get("meta.helm.sh/release-name", "no Helm release")
                      for c in istio_crds()})
    assert not foreign, f"Istio CRDs are left in the cluster by {foreign}: another test did not clean up"
    t0 = time.monotonic()
    common = ["--repo", CHART_REPO, "--version", ISTIO_VERSION, "-n", ISTIO_NS, "--create-namespace",
              "--set", f"global.istioNamespace={ISTIO_NS}", "--wait", "--timeout", "3m"]
    try:
        base = helm("install", BASE_RELEASE, "base", *common)
        assert base.returncode == 0, base.stderr
        installed = helm("install", ISTIOD_RELEASE, "istiod", *common)
        assert installed.returncode == 0, installed.stderr
        t_helm = time.monotonic() - t0
        addr = core.read_namespaced_service("istiod", ISTIO_NS).spec.cluster_ip
        eventually("pilot-discovery ready on the istiod ClusterIP (see $SMI_STATE/logs/istiod-default.log)",
                   lambda: ready(addr), START_TIMEOUT_S)
        t_ready = time.monotonic() - t0
        eventually("istiod to patch the injection webhook's caBundle",
                   lambda: all(webhook_ca_bundles(k8s, "mutating", "istio-sidecar-injector")), 60)
        info = {"address": addr, "t_helm": t_helm, "t_ready": t_ready, "t0": t0}
        print(f"\nhelm installs: {t_helm:.1f} s; pilot-discovery ready {t_ready:.1f} s after the first helm install")
        yield info
    finally:
        uninstall_everything(k8s)


def bookinfo_productpage(k8s, namespace: str) -> client.V1Pod:
    """Bookinfo's productpage (ServiceAccount, Service, Deployment); its pod once Ready."""
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="bookinfo-productpage")))
    core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="productpage", labels={"app": "productpage", "service": "productpage"}),
        spec=client.V1ServiceSpec(selector={"app": "productpage"},
                                  ports=[client.V1ServicePort(name="http", port=9080)])))
    labels = {"app": "productpage", "version": "v1"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="productpage-v1", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(service_account_name="bookinfo-productpage", containers=[
                    client.V1Container(name="productpage", image=PRODUCTPAGE_IMAGE,
                                       ports=[client.V1ContainerPort(container_port=9080)])])))))

    def ready_pod():
        for pod in core.list_namespaced_pod(namespace, label_selector="app=productpage").items:
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod
        return None

    return eventually(f"a Ready productpage pod in {namespace}", ready_pod, 60, 0.5)


def sidecars(pod: client.V1Pod) -> list[str]:
    """Names of the pod's sidecars: regular containers and native (restartPolicy Always) init containers."""
    native = [c.name for c in pod.spec.init_containers or [] if c.restart_policy == "Always"]
    return [c.name for c in pod.spec.containers if c.name != "productpage"] + native


def test_real_pilot_discovery_serves_on_the_service_cluster_ip(k8s, istiod):
    addr = istiod["address"]
    # The address is a /32 on the namespace's loopback, nothing wider.
    mine = [a for a in service_if_addresses() if a["local"] == addr]
    assert mine and mine[0]["prefixlen"] == 32, service_if_addresses()
    # It is pilot-discovery, built from the pinned snapshot.
    pid = istiod_pid()
    assert pid is not None
    assert os.readlink(f"/proc/{pid}/exe").endswith("/pilot-discovery")
    status, body = http_get(f"http://{addr}:15014/version")
    assert status == 200 and body.strip(), body
    # Bound to the ClusterIP only: nothing of istiod on other local addresses.
    for port in (443, 15010, 15012, 15014, 8080):
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED, port
        with socket.create_connection((addr, port), timeout=2):
            pass


def test_pilot_discovery_is_built_from_the_pinned_snapshot(istiod):
    """The binary's Go build info names the istio.io/istio version it was compiled from."""
    pid = istiod_pid()
    assert pid is not None
    exe = os.readlink(f"/proc/{pid}/exe")
    built = VERSIONS["ISTIOD_BUILD_SNAPSHOT"]
    pseudo = dict(p.split("=", 1) for p in VERSIONS["ISTIO_SNAPSHOTS"].split())[built]
    assert f"istiod-{pseudo}" in exe
    with open(exe, "rb") as binary:
        found = re.search(rb"(?:mod|dep)\tistio\.io/istio\t(v[^\t\n]+)", binary.read())
    assert found, f"no istio.io/istio module in the build info of {exe}"
    assert found.group(1).decode() == pseudo, (
        f"{exe} is compiled from istio.io/istio {found.group(1).decode()}, not {pseudo} ({built})")


def test_bookinfo_pod_in_labelled_namespace_gets_the_sidecar(k8s, istiod, namespace):
    core = client.CoreV1Api(k8s)
    core.patch_namespace(namespace, {"metadata": {"labels": {"istio-injection": "enabled"}}})
    t0 = time.monotonic()
    pod = bookinfo_productpage(k8s, namespace)
    print(f"\ninjected productpage pod Ready {time.monotonic() - t0:.1f} s after the Deployment was created; "
          f"{time.monotonic() - istiod['t0']:.1f} s after the first helm install")
    assert "istio-proxy" in sidecars(pod), pod.spec
    init = [c.name for c in pod.spec.init_containers or [] if c.restart_policy != "Always"]
    assert "istio-init" in init, init  # no CNI: the template adds the iptables init container
    status = json.loads(pod.metadata.annotations["sidecar.istio.io/status"])
    assert "istio-proxy" in status["containers"] + status.get("initContainers", []), status
    proxy = next(c for c in [*pod.spec.containers, *(pod.spec.init_containers or [])] if c.name == "istio-proxy")
    assert proxy.args[:2] == ["proxy", "sidecar"], proxy.args
    env = {e.name: e.value for e in proxy.env or []}
    # Rendered by istiod from the chart's mesh config (discoveryAddress) and values.
    assert env.get("CA_ADDR") == "istiod.istio-system.svc:15012", env
    assert env.get("ISTIO_META_CLUSTER_ID") == "Kubernetes", env
    assert proxy.image.endswith("/proxyv2:latest") or "proxyv2" in proxy.image, proxy.image
    # KWOK marks every container, the proxy included, running and ready.
    statuses = {s.name: s for s in [*(pod.status.container_statuses or []), *(pod.status.init_container_statuses or [])]}
    assert statuses["istio-proxy"].ready, statuses["istio-proxy"]
    # Istio's analyzer finds nothing wrong with the control plane or the injected workload.
    assert_istio_analyze_clean(namespace, ISTIO_NS)


def test_pod_in_unlabelled_namespace_gets_no_sidecar(k8s, istiod, namespace):
    pod = bookinfo_productpage(k8s, namespace)
    assert [c.name for c in pod.spec.containers] == ["productpage"]
    assert not pod.spec.init_containers
    assert "sidecar.istio.io/status" not in (pod.metadata.annotations or {})
    # Not in the mesh is no error: at most an Info that the namespace is not injected.
    assert_istio_analyze_clean(namespace)


def test_webhook_ca_bundles_are_patched_by_istiod(k8s, istiod):
    # The chart ships the webhooks without a caBundle ...
    manifest = helm("get", "manifest", ISTIOD_RELEASE, "-n", ISTIO_NS)
    assert manifest.returncode == 0, manifest.stderr
    rendered = [d for d in yaml.safe_load_all(manifest.stdout) if d and d.get("kind") == "MutatingWebhookConfiguration"]
    assert rendered and all(not w["clientConfig"].get("caBundle") for d in rendered for w in d["webhooks"])
    # ... and istiod patched in the root of its own CA ...
    bundles = webhook_ca_bundles(k8s, "mutating", "istio-sidecar-injector")
    assert bundles and all(b.startswith(b"-----BEGIN CERTIFICATE-----") for b in bundles), bundles
    secret = client.CoreV1Api(k8s).read_namespaced_secret("istio-ca-secret", ISTIO_NS)
    assert base64.b64decode(secret.data["ca-cert.pem"]).strip() in bundles[0]
    # ... which verifies the certificate istiod serves at the ClusterIP under
    # the name the apiserver uses.
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as ca:
        ca.write(bundles[0])
        ca.flush()
        ctx = ssl.create_default_context(cafile=ca.name)
    with socket.create_connection((istiod["address"], 443), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="istiod.istio-system.svc") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # The validating webhooks: caBundle patched too, and switched to fail-close
    # once istiod saw its own endpoint reject a dry-run of invalid config.
    adm = client.AdmissionregistrationV1Api(k8s)

    def validators_armed():
        out = []
        for name in ("istio-validator-istio-system", "istiod-default-validator"):
            cfg = adm.read_validating_webhook_configuration(name)
            out += [(w.client_config.ca_bundle or "") != "" and w.failure_policy == "Fail" for w in cfg.webhooks]
        return all(out)

    eventually("istiod to patch the validating webhooks (caBundle, failurePolicy Fail)", validators_armed, 60)


def destination_rule(name: str, subsets: list[str]) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name},
        "spec": {"host": "reviews", "subsets": [{"name": s, "labels": {"version": s}} for s in subsets]},
    }


def test_istiod_validation_rejects_what_the_crd_schema_accepts(k8s, istiod, namespace):
    custom = client.CustomObjectsApi(k8s)
    eventually("the validating webhooks to be armed",
               lambda: all(w.failure_policy == "Fail" for w in client.AdmissionregistrationV1Api(k8s)
                           .read_validating_webhook_configuration("istiod-default-validator").webhooks), 60)
    args = ("networking.istio.io", "v1", namespace, "destinationrules")
    # A valid one is admitted ...
    custom.create_namespaced_custom_object(*args, destination_rule("reviews", ["v1", "v2"]))
    # ... one with duplicate subset names passes the CRD's OpenAPI schema (it
    # is checked before validating admission) and is refused by istiod.
    with pytest.raises(client.ApiException) as err:
        custom.create_namespaced_custom_object(*args, destination_rule("reviews-dup", ["v1", "v1"]))
    body = err.value.body or ""
    assert "admission webhook" in body and "validation.istio.io" in body, body
    assert "duplicate subset names" in body, body


def test_changes_restart_istiod_and_injection_keeps_working(k8s, istiod, namespace):
    """A Helm upgrade changes the Deployment, a ConfigMap edit the mesh config:
    each time the runner restarts pilot-discovery, and injection works after."""
    before = istiod_pid()
    assert before is not None
    upgraded = helm("upgrade", ISTIOD_RELEASE, "istiod", "--repo", CHART_REPO, "--version", ISTIO_VERSION,
                    "-n", ISTIO_NS, "--reuse-values", "--set", "pilot.env.SMISTIO_TEST_GENERATION=2",
                    "--wait", "--timeout", "3m")
    assert upgraded.returncode == 0, upgraded.stderr
    eventually("a new pilot-discovery", lambda: (pid := istiod_pid()) is not None and pid != before, 60)
    eventually("the new pilot-discovery to be ready", lambda: ready(istiod["address"]), START_TIMEOUT_S)
    with open(f"/proc/{istiod_pid()}/environ", "rb") as env:
        assert b"SMISTIO_TEST_GENERATION=2" in env.read().split(b"\0")
    # A change of the mesh ConfigMap alone restarts it too.
    core = client.CoreV1Api(k8s)
    before = istiod_pid()
    mesh = core.read_namespaced_config_map("istio", ISTIO_NS).data["mesh"]
    core.patch_namespaced_config_map("istio", ISTIO_NS, {"data": {"mesh": mesh + "\n# smistio: changed\n"}})
    eventually("pilot-discovery restarted after the ConfigMap change",
               lambda: (pid := istiod_pid()) is not None and pid != before, 60)
    eventually("the new pilot-discovery to be ready", lambda: ready(istiod["address"]), START_TIMEOUT_S)
    core.patch_namespace(namespace, {"metadata": {"labels": {"istio-injection": "enabled"}}})
    pod = bookinfo_productpage(k8s, namespace)
    assert "istio-proxy" in sidecars(pod)
    assert_istio_analyze_clean(namespace, ISTIO_NS)


def test_uninstall_stops_istiod_and_frees_the_address(k8s, istiod):
    addr = istiod["address"]
    removed = helm("uninstall", ISTIOD_RELEASE, "-n", ISTIO_NS, "--wait", "--timeout", "2m")
    assert removed.returncode == 0, removed.stderr
    eventually("pilot-discovery to stop", lambda: istiod_pid() is None, 60)
    eventually(f"{addr} to leave {SERVICE_IP_IF}", lambda: all(a["local"] != addr for a in service_if_addresses()), 30)
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex((addr, 443)) == errno.ENETUNREACH
