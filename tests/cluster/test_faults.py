# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16, faults: what the user sees when a part of the cluster fails, and
a rerun that converges once it is back, with nothing duplicated.

Real faults of the local test cluster, not simulated answers:
- a chart repository down: a loopback port nothing listens on, given as the
  Istio or the cert-manager chart repository;
- no LoadBalancer IP ever: the test cluster's LoadBalancer controller
  (hack/testcluster/lb_controller.py, the cloud's part) is paused (SIGSTOP),
  then continued;
- istiod down while Bookinfo deploys: istiod's Deployment scaled to 0 (the
  workload runner stops the real pilot-discovery), so the API server's calls
  to its sidecar injection webhook fail, as they do on a real cluster.

The module starts from the fresh cluster `make test` leaves it and ends with
a reset (conftest.reset_cluster).
"""

from __future__ import annotations

import os
import signal

import pytest
from kubernetes import client

from conftest import REPO_ROOT, STATE, eventually, helm_releases_any_status, reset_cluster, run_per_host, run_playbook

pytestmark = pytest.mark.cluster

SITE = REPO_ROOT / "playbooks/site.yml"
NOWHERE = "http://127.0.0.1:9/charts"  # loopback of the cluster's namespace, nothing listens
NS = "smistio-faults"


@pytest.fixture(scope="module", autouse=True)
def fresh_cluster_afterwards():
    yield
    reset_cluster()


def helm_releases() -> list[dict]:
    return [{"name": r["name"], "namespace": r["namespace"], "status": r["status"]} for r in helm_releases_any_status()]


def test_a_chart_repository_down_is_named_before_any_change(tmp_path):
    """Istio's or cert-manager's chart repository does not answer: the run
    stops in the preflight naming the variable and the URL; nothing changed."""
    cases = [{"istio_install_chart_repo": NOWHERE}, {"ingress_tls_cert_manager_chart_repo": NOWHERE}]
    matrix = run_per_host(SITE, cases, tmp_path)
    assert matrix["rc"] != 0
    for index, variable in enumerate(["istio_install_chart_repo", "ingress_tls_cert_manager_chart_repo"]):
        case = matrix["hosts"][index]
        message = " ".join(case["failures"])
        assert variable in message and NOWHERE in message, (variable, case["failures"], matrix["explain"]())
        # Refused by a check (Istio's own chart check is istio_install's first task), before any change.
        assert case["failed_tasks"] and all("Check" in name for name in case["failed_tasks"]), case
        assert case["changed"] == [] and case["stats"].get("changed", 0) == 0, case
    assert matrix["changes"] == [], matrix["changes"]
    assert helm_releases() == []


def pause_component(name: str, sig: int) -> None:
    """Stop (SIGSTOP) or continue (SIGCONT) one of the test cluster's components
    (``cluster.sh restart`` would end every process in the namespace, this test too)."""
    os.kill(int((STATE / "run" / f"{name}.pid").read_text()), sig)


def test_no_loadbalancer_ip_ever_is_named_and_a_rerun_converges(k8s):
    """The cluster never gives the gateway's Service an address (its
    LoadBalancer controller paused): the install fails after its wait naming
    the Service and what to check; once the controller runs again, a rerun
    converges: each release once, deployed, and the gateway has its address."""
    pause_component("lb-controller", signal.SIGSTOP)
    try:
        run = run_playbook(SITE, "--tags", "istio",
                           extra_vars={"istio_install_wait_timeout": 15, "istio_install_gateway_ip_timeout": 15})
        assert run.rc != 0
        message = " ".join(run.failures())
        assert "istio-system/istio-ingressgateway" in message, message
        assert "If the Service has no external IP: the cluster gave it none" in message, message
        assert "LoadBalancer support" in message, message
    finally:
        pause_component("lb-controller", signal.SIGCONT)
    again = run_playbook(SITE, "--tags", "istio")
    assert again.rc == 0, again.explain()
    releases = helm_releases()
    assert sorted(r["name"] for r in releases) == ["istio-base", "istio-ingressgateway", "istiod"], releases
    assert {r["status"] for r in releases} == {"deployed"}, releases
    svc = client.CoreV1Api(k8s).read_namespaced_service("istio-ingressgateway", "istio-system")
    assert svc.status.load_balancer.ingress and svc.status.load_balancer.ingress[0].ip, svc.status


def istiod_processes() -> list[int]:
    """The live pids of this cluster's istiod, from the workload runner's pid files."""
    out = []
    for pid_file in (STATE / "run" / "workloads").glob("istiod-*.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        out.append(pid)
    return out


def test_istiod_down_while_bookinfo_deploys_is_named_and_a_rerun_converges(k8s):
    """Istio installed (the test before), then istiod stopped: the API server
    cannot call its injection webhook, so Bookinfo's ReplicaSets create no pod.
    The run fails naming the webhook from the ReplicaSets' events; with istiod
    back, a rerun converges with every pod injected and no Deployment twice."""
    apps = client.AppsV1Api(k8s)
    apps.patch_namespaced_deployment_scale("istiod", "istio-system", {"spec": {"replicas": 0}})
    try:
        eventually("the workload runner to stop istiod", lambda: not istiod_processes(), 60)
        run = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": NS, "bookinfo_ready_timeout": 20})
        assert run.rc != 0
        message = " ".join(run.failures())
        assert "sidecar-injector.istio.io" in message, message
    finally:
        apps.patch_namespaced_deployment_scale("istiod", "istio-system", {"spec": {"replicas": 1}})
    eventually("istiod to serve again", lambda: (apps.read_namespaced_deployment_status("istiod", "istio-system")
                                                 .status.ready_replicas or 0) >= 1, 120)
    again = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": NS})
    assert again.rc == 0, again.explain()
    deployments = [d.metadata.name for d in apps.list_namespaced_deployment(NS).items]
    assert len(deployments) == len(set(deployments)) == 6, deployments
    pods = client.CoreV1Api(k8s).list_namespaced_pod(NS).items
    assert pods and all(any(c.name == "istio-proxy" for c in (p.spec.containers or []) + (p.spec.init_containers or []))
                        for p in pods), [p.metadata.name for p in pods]
