"""Issue 2: the local test cluster behaves like a real one where it matters.

Everything here talks to the real kube-apiserver of the test cluster. What is
simulated: KWOK marks pods Running/Ready on fake nodes (no container runs) and
hack/testcluster/lb_controller.py hands out LoadBalancer IPs as a cloud would.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import time

import pytest
from kubernetes import client

from conftest import CHART_REPO, ISTIO_VERSION, REPO_ROOT, delete_namespace_and_wait, run_playbook

PLAYBOOKS = REPO_ROOT / "tests/cluster/playbooks"


def test_api_server_reports_its_real_version(k8s):
    info = client.VersionApi(k8s).get_code()
    expected = (REPO_ROOT / "hack/testcluster/versions.env").read_text().split("KUBERNETES_VERSION=")[1].split()[0]
    assert info.git_version == expected
    assert info.major == "1" and int(info.minor) >= 34


def test_two_fake_worker_nodes_are_ready(k8s):
    nodes = client.CoreV1Api(k8s).list_node().items
    ready = [n.metadata.name for n in nodes
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
    assert len(ready) >= 2, f"ready nodes: {ready}"


@pytest.fixture
def foundation_namespace(k8s):
    """The playbook's namespace goes when the test ends (its pods have no
    sidecar, which later mesh-wide checks would rightly complain about)."""
    yield "smistio-foundation"
    delete_namespace_and_wait(k8s, "smistio-foundation")


def test_deployment_available_and_loadbalancer_ip(k8s, foundation_namespace):
    run = run_playbook(PLAYBOOKS / "foundation_workloads.yml")
    assert run.rc == 0, run.explain()
    # Check independently of the playbook's own asserts.
    apps = client.AppsV1Api(k8s)
    dep = apps.read_namespaced_deployment("web", "smistio-foundation")
    assert dep.status.available_replicas == 2
    pods = client.CoreV1Api(k8s).list_namespaced_pod("smistio-foundation", label_selector="app=web").items
    assert len(pods) == 2 and {p.spec.node_name for p in pods} <= {"kwok-worker-1", "kwok-worker-2"}
    svc = client.CoreV1Api(k8s).read_namespaced_service("web-reserved", "smistio-foundation")
    assert svc.status.load_balancer.ingress[0].ip == "127.0.100.250"
    # A second run changes nothing.
    again = run_playbook(PLAYBOOKS / "foundation_workloads.yml")
    assert again.rc == 0 and again.changed == 0, again.explain()


@pytest.fixture
def foundation_release(k8s):
    """Remove the test's Helm release and the CRDs it brought afterwards, so
    that the roles' own Istio install starts from a clean cluster."""
    yield
    subprocess.run(["helm", "uninstall", "smistio-foundation-base", "-n", "smistio-foundation-helm", "--wait"],
                   capture_output=True, check=False)
    ext = client.ApiextensionsV1Api(k8s)
    for crd in ext.list_custom_resource_definition().items:
        if (crd.metadata.annotations or {}).get("meta.helm.sh/release-name") == "smistio-foundation-base":
            ext.delete_custom_resource_definition(crd.metadata.name)
    delete_namespace_and_wait(k8s, "smistio-foundation-helm")


def test_helm_install_from_local_repo_is_idempotent_and_crd_validation_is_real(k8s, foundation_release):
    extra = {"chart_repo": CHART_REPO, "istio_version": ISTIO_VERSION}
    first = run_playbook(PLAYBOOKS / "foundation_helm.yml", extra_vars=extra)
    assert first.rc == 0, first.explain()
    messages = [r.get("msg", "") for name, _h, r in first.task_results() if name == "Show the API server's message"]
    assert messages and "spec.hosts" in messages[0], messages
    second = run_playbook(PLAYBOOKS / "foundation_helm.yml", extra_vars=extra)
    assert second.rc == 0, second.explain()
    helm_changed = [n for n in second.changed_tasks() if "Install Istio's base chart" in n]
    assert helm_changed == [], second.explain()
    crds = client.ApiextensionsV1Api(k8s).list_custom_resource_definition().items
    istio_crds = sorted(c.metadata.name for c in crds if c.spec.group.endswith("istio.io"))
    assert "virtualservices.networking.istio.io" in istio_crds
    assert "peerauthentications.security.istio.io" in istio_crds
    assert "destinationrules.networking.istio.io" in istio_crds


def test_nothing_leaves_loopback():
    """Inside the namespace only `lo` exists: Service, pod and public addresses
    fail at once instead of leaving the machine. The only addresses besides
    127.0.0.1/8 and ::1 are /32s on lo: the ClusterIPs and pod IPs of the
    workloads hack/testcluster/workload_runner.py runs (local by construction)."""
    import json

    def ip_json(*args):
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout)

    ifaces = [name for _idx, name in socket.if_nameindex()]
    assert ifaces == ["lo"], ifaces
    service_ips = set()
    for link in ip_json("addr", "show"):
        for addr in link.get("addr_info", []):
            if (addr["local"], addr["prefixlen"]) in (("127.0.0.1", 8), ("::1", 128)):
                continue
            # Anything else: an IPv4 /32, which adds no route but its own.
            assert addr["family"] == "inet" and addr["prefixlen"] == 32, (link["ifname"], addr)
            service_ips.add(addr["local"])
    # No default route, nothing but loopback's own local/broadcast routes, in any table.
    for family in ("-4", "-6"):
        for route in ip_json(family, "route", "show", "table", "all"):
            assert route["dst"] != "default", route
            assert route.get("dev") == "lo" and route.get("type") in ("local", "broadcast"), route
            if route["type"] == "local" and not route["dst"].startswith("127.") and route["dst"] != "::1":
                assert route["dst"] in service_ips, route
    candidates = ["10.96.0.1", "10.244.0.5", "10.123.45.67", "10.250.0.1", "203.0.113.10"]
    targets = [a for a in candidates if a not in service_ips]
    assert "203.0.113.10" in targets and len([a for a in targets if a.startswith("10.")]) >= 2, service_ips
    for address in targets:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(2)
        start = time.monotonic()
        with pytest.raises(OSError) as err:
            sock.connect((address, 443))
        sock.close()
        assert err.value.errno == errno.ENETUNREACH, (address, err.value)
        assert time.monotonic() - start < 0.5
