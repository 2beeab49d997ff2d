"""Istio's Prometheus addon runs for real on the local test cluster.

Real: the addon's manifest of the pinned Istio version (samples/addons/
prometheus.yaml from the local mirror) applied to the kube-apiserver;
Debian's prometheus binary, run by hack/testcluster/workload_runner.py for the
addon's Deployment with the addon's ConfigMap (its kubernetes_sd_configs
discovering pods through the API server with the addon's ServiceAccount and
RBAC), listening on the prometheus Service's ClusterIP; istiod
(pilot-discovery on the host) serving its metrics on :15014, reached at the
pod IP that Prometheus discovers (the runner puts the pod IPs KWOK gives on lo
and forwards them to the process, as a pod network would).

The binary is Prometheus at the version the addon's image pins, built from
its Go module with Kubernetes discovery only (hack/testcluster/build.sh
prometheus); Debian's package cannot stand in (it has no kubernetes_sd_configs).

Run inside the cluster's network namespace:
    hack/testcluster/cluster.sh exec -- .venv/bin/pytest tests/cluster/test_prometheus_addon.py
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from kubernetes import client

from conftest import ISTIO_VERSION, REPO_ROOT, kubectl, reset_cluster, run_playbook, until_answering as wait


SITE = REPO_ROOT / "playbooks/site.yml"
NS = "istio-system"
MIRROR = os.environ.get("SMI_FILE_MIRROR", "http://127.0.0.1:8879")
ADDON = f"{MIRROR}/istio/{ISTIO_VERSION}/samples/addons/prometheus.yaml"


def proxy_get(api, path: str) -> tuple[int, bytes]:
    """GET through the API server's service proxy to the prometheus Service."""
    base, _sep, query = path.partition("?")
    request = api.param_serialize(
        "GET", f"/api/v1/namespaces/{NS}/services/prometheus:9090/proxy{base}",
        query_params=[tuple(kv.split("=", 1)) for kv in query.split("&")] if query else None,
        auth_settings=["BearerToken"])
    resp = api.call_api(*request, _request_timeout=10)
    return resp.status, resp.read()


@pytest.fixture(scope="module")
def prometheus(k8s):
    base = run_playbook(SITE, "--tags", "istio")
    assert base.rc == 0, base.explain()
    applied = kubectl("apply", "-f", ADDON)
    assert applied.returncode == 0, applied.stderr
    try:
        yield client.CoreV1Api(k8s).read_namespaced_service("prometheus", NS).spec.cluster_ip
    finally:
        reset_cluster()


def test_the_built_prometheus_is_the_version_the_addon_pins(k8s, prometheus):
    """No version skew: the runner runs the Prometheus the addon's image names."""
    del prometheus
    dep = client.AppsV1Api(k8s).read_namespaced_deployment("prometheus", NS)
    (image,) = [c.image for c in dep.spec.template.spec.containers if c.name == "prometheus-server"]
    built = dict(line.split("=", 1) for line in (REPO_ROOT / "hack/testcluster/versions.env").read_text().splitlines()
                 if "=" in line and not line.startswith("#"))["PROMETHEUS_VERSION"]
    assert image.rsplit(":", 1)[1] == built, (image, built)


def test_prometheus_is_ready_through_the_api_servers_service_proxy(k8s, prometheus):
    def ready():
        got = proxy_get(k8s, "/-/ready")
        return got if got[0] == 200 else None

    status, body = wait("Prometheus /-/ready through the service proxy", ready, 60)
    assert status == 200 and b"Ready" in body
    # The same process on the Service's ClusterIP.
    with urllib.request.urlopen(f"http://{prometheus}:9090/-/ready", timeout=5) as resp:
        assert resp.status == 200


def test_prometheus_scrapes_istiods_real_metrics(k8s, prometheus):
    """The addon's kubernetes-pods job finds the istiod pod (annotations
    prometheus.io/scrape and port 15014) and scrapes pilot-discovery."""
    def istiod_up():
        _status, body = proxy_get(k8s, "/api/v1/targets?state=active")
        targets = json.loads(body)["data"]["activeTargets"]
        istiod = [t for t in targets if t["labels"].get("app") == "istiod"]
        return istiod if istiod and istiod[0]["health"] == "up" else None

    istiod = wait("an istiod target that is up", istiod_up, 90, 3)
    assert istiod[0]["scrapePool"] == "kubernetes-pods", istiod[0]
    assert istiod[0]["scrapeUrl"].endswith(":15014/metrics"), istiod[0]
    # A metric only pilot-discovery exports, with a value it really computed.
    _status, body = proxy_get(k8s, "/api/v1/query?query=pilot_info")
    result = json.loads(body)["data"]["result"]
    assert result and result[0]["metric"].get("app") == "istiod", result


def test_a_pod_that_does_not_run_is_down(k8s, prometheus):
    """Nothing is faked: a pod KWOK marks Running but whose process does not
    exist (the ingress gateway's pod, annotated for scraping on 15020: no
    Envoy runs) is a target that is down."""
    def any_down():
        _status, body = proxy_get(k8s, "/api/v1/targets?state=active")
        targets = json.loads(body)["data"]["activeTargets"]
        return [t for t in targets if t["health"] == "down"] or None

    down = wait("a down target", any_down, 90, 3)
    assert down
