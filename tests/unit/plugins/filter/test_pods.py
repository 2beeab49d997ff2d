# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/verify.yml's judgement of Bookinfo's pods (plugins/filter/pods.py),
on pods shaped as kubernetes.core.k8s_info returns them."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.filter.pods import app_pods_status, has_istio_proxy

APPS = ["productpage", "details", "ratings", "reviews"]


def bookinfo_pod(app, version="v1", ready=True, proxy="container", deleting=False, suffix="7d4b9c8f6-x2x9z"):
    """A Bookinfo pod; proxy: container (injected sidecar), init (native sidecar) or None."""
    name = f"{app}-{version}-{suffix}"
    containers = [{"name": app, "image": f"docker.io/istio/examples-bookinfo-{app}-{version}:1.20.3",
                   "ports": [{"containerPort": 9080, "protocol": "TCP"}]}]
    init = []
    if proxy == "container":
        init.append({"name": "istio-init", "image": "docker.io/istio/proxyv2:1.30.4"})
        containers.append({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.4"})
    elif proxy == "init":
        init += [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.30.4"},
                 {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.4", "restartPolicy": "Always"}]
    metadata = {"name": name, "namespace": "bookinfo", "uid": f"uid-{name}",
                "labels": {"app": app, "version": version, "security.istio.io/tlsMode": "istio"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": f"{app}-{version}-7d4b9c8f6"}]}
    if deleting:
        metadata["deletionTimestamp"] = "2026-03-01T10:05:00Z"
        metadata["deletionGracePeriodSeconds"] = 30
    spec = {"containers": containers, "nodeName": "worker-1"}
    if init:
        spec["initContainers"] = init
    conditions = [{"type": t, "status": "True"} for t in ("PodReadyToStartContainers", "Initialized", "PodScheduled")]
    conditions += [{"type": t, "status": "True" if ready else "False"} for t in ("Ready", "ContainersReady")]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": {"phase": "Running", "conditions": conditions, "podIP": "10.244.1.20"}}


def test_a_healthy_bookinfo():
    pods = [bookinfo_pod("productpage"), bookinfo_pod("details", proxy="init"), bookinfo_pod("ratings"),
            bookinfo_pod("reviews", "v1"), bookinfo_pod("reviews", "v2"), bookinfo_pod("reviews", "v3")]
    status = app_pods_status(pods, APPS)
    assert status == {"live": [p["metadata"]["name"] for p in pods], "missing_apps": [], "unready": [],
                      "without_sidecar": []}


def test_unready_and_uninjected_pods_are_named():
    pods = [bookinfo_pod("productpage"), bookinfo_pod("details", proxy=None), bookinfo_pod("ratings", ready=False),
            bookinfo_pod("reviews")]
    status = app_pods_status(pods, APPS)
    assert status["unready"] == ["ratings-v1-7d4b9c8f6-x2x9z"]
    assert status["without_sidecar"] == ["details-v1-7d4b9c8f6-x2x9z"]
    assert status["missing_apps"] == []


def test_terminating_pods_do_not_count():
    pods = [bookinfo_pod("productpage", ready=False, proxy=None, deleting=True, suffix="old"),
            bookinfo_pod("productpage", suffix="new"), bookinfo_pod("details", deleting=True)]
    status = app_pods_status(pods, APPS)
    assert status == {"live": ["productpage-v1-new"], "missing_apps": ["details", "ratings", "reviews"],
                      "unready": [], "without_sidecar": []}


def test_no_pods_every_app_missing_in_order():
    assert app_pods_status([], APPS) == {"live": [], "missing_apps": APPS, "unready": [], "without_sidecar": []}


def test_a_pod_without_status_or_conditions_is_not_ready():
    pod = bookinfo_pod("details")
    del pod["status"]
    assert app_pods_status([pod], ["details"])["unready"] == [pod["metadata"]["name"]]


@pytest.mark.parametrize(("proxy", "expected"), [("container", True), ("init", True), (None, False)])
def test_has_istio_proxy(proxy, expected):
    assert has_istio_proxy(bookinfo_pod("details", proxy=proxy)) is expected


def test_only_a_container_named_istio_proxy_counts():
    pod = bookinfo_pod("details", proxy=None)
    pod["spec"]["initContainers"] = [{"name": "istio-init"}]
    pod["spec"]["containers"].append({"name": "istio-proxy-exporter"})
    assert has_istio_proxy(pod) is False


def test_bad_input_is_an_error():
    with pytest.raises(AnsibleFilterError, match="expects the pods k8s_info returns"):
        app_pods_status({"resources": []}, APPS)
