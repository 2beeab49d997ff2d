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
  to its sidecar injection webhook fail, as they do on a real cluster;
- the API server killed (SIGKILL) during a Helm install, during a wait and
  during an apply, and started again some seconds later with etcd and every
  other component as they were (conftest.api_server_outage). Each is caught
  at its moment by what the cluster shows (Helm's pending-install record, the
  applied Deployments, the namespace the apply creates), not by a timer;
- DNS never resolving: the host's record never created in the test
  cluster's real DNS servers (knotd, hack/testcluster/acme_lab.py).

The module starts from the fresh cluster `make test` leaves it and ends with
a reset (conftest.reset_cluster).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import yaml
from kubernetes import client

from conftest import (REPO_ROOT, SITE_ACME, SITE_VARS, STATE, api_server_outage, eventually, helm_releases_any_status, reset_cluster,
                      run_per_host, run_playbook)

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


class OutageWhen(threading.Thread):
    """Takes the API server down for ``down`` seconds the first time
    ``seen()`` is true (polled every 20 ms while the run goes on; an error
    counts as not yet), then runs ``after`` if given."""

    def __init__(self, seen, down: float = 6.0, timeout: float = 600, after=None):
        super().__init__(daemon=True)
        self.seen, self.down, self.timeout, self.after = seen, down, timeout, after
        self.outage: dict | None = None
        self.error: BaseException | None = None

    def run(self):
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                try:
                    hit = self.seen()
                except Exception:  # noqa: BLE001  (the API server is the thing under test)
                    hit = False
                if hit:
                    self.outage = api_server_outage(self.down)
                    return
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc
        finally:
            if self.after:
                self.after()

    def result(self) -> dict:
        self.join(timeout=180)
        assert self.error is None, self.error
        assert self.outage, "the moment to take the API server down never came"
        return self.outage


def item_results(run, task: str) -> list[dict]:
    """The results of a task (of each item, for a loop) whose name has ``task`` in it."""
    out = []
    for name, _host, result in run.task_results():
        if task in name:
            out += result.get("results", [result])
    return out


def test_api_server_killed_during_a_helm_install_is_ridden_out(k8s):
    """The API server is killed the moment Helm has recorded istio-base as
    pending-install, and comes back 6 s later: the Helm step says it could not
    reach the API server and tries again, finds the release an install never
    finished, uninstalls and installs it again, and the run succeeds; each
    release once, deployed."""
    reset_cluster()
    core = client.CoreV1Api(k8s)

    def pending_install():
        return core.list_namespaced_secret("istio-system", label_selector="owner=helm,status=pending-install",
                                           _request_timeout=2).items

    outage = OutageWhen(pending_install)
    outage.start()
    run = run_playbook(SITE, "--tags", "istio")
    down = outage.result()
    assert run.rc == 0, run.explain()
    base = [r for r in item_results(run, "Install or upgrade the control plane charts")
            if r.get("item", {}).get("name") == "istio-base"]
    assert base and base[0]["retries"], base
    assert any("could not reach the API server for release istio-system/istio-base" in line
               for line in base[0]["retries"]), base[0]["retries"]
    assert base[0]["cleared_pending"] and "was pending-install" in base[0]["cleared_pending"][0], base[0]
    # said while it happened, not only in the result
    assert "could not reach the API server for release istio-system/istio-base" in run.stderr, run.stderr[-3000:]
    assert "uninstalling it to install it again" in run.stderr, run.stderr[-3000:]
    releases = helm_releases()
    assert sorted(r["name"] for r in releases) == ["istio-base", "istio-ingressgateway", "istiod"], releases
    assert {r["status"] for r in releases} == {"deployed"}, releases
    assert down["ready_at"] - down["down_at"] >= 6
    again = run_playbook(SITE, "--tags", "istio")
    assert again.rc == 0 and again.changed == 0, again.explain()


def test_api_server_killed_during_a_wait_is_ridden_out(k8s):
    """Bookinfo applied, its pods not Ready yet (KWOK, the kubelets' stand-in,
    paused), and the API server killed for 6 s while the role waits: the wait
    says nothing answered and goes on, the pods become Ready once KWOK runs
    again, and the run succeeds."""
    apps = client.AppsV1Api(k8s)
    namespace = f"{NS}-wait"

    def applied():
        return len(apps.list_namespaced_deployment(namespace, _request_timeout=2).items) >= 6

    def resume():
        pause_component("kwok", signal.SIGCONT)

    pause_component("kwok", signal.SIGSTOP)
    outage = OutageWhen(applied, after=resume)
    try:
        outage.start()
        run = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": namespace})
    finally:
        resume()
    outage.result()
    assert run.rc == 0, run.explain()
    assert "the API server does not answer (" in run.stderr, run.stderr[-3000:]
    assert "the API server answers again, after" in run.stderr, run.stderr[-3000:]
    deployments = [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items]
    assert len(deployments) == len(set(deployments)) == 6, deployments


def test_api_server_killed_during_an_apply_is_ridden_out(k8s):
    """The API server is killed the moment the Bookinfo apply has created its
    namespace, for 6 s: the apply fails for want of an answer, is tried again
    (the roles' writes retry what `servicemesh.istio.api_unreachable` calls
    transient) and the run succeeds; six Deployments, each once, and a rerun
    changes nothing."""
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    namespace = f"{NS}-apply"

    def created():
        return core.list_namespace(field_selector=f"metadata.name={namespace}", _request_timeout=2).items

    outage = OutageWhen(created)
    outage.start()
    run = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": namespace})
    outage.result()
    assert run.rc == 0, run.explain()
    applied, = item_results(run, "Label the namespace and deploy Bookinfo")
    assert applied["attempts"] > 1, applied
    deployments = [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items]
    assert len(deployments) == len(set(deployments)) == 6, deployments
    again = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": namespace})
    assert again.rc == 0 and again.changed == 0, again.explain()


def test_dns_never_resolving_names_what_each_authoritative_server_answered(k8s):
    """The host's record is never created (the RFC 2136 update off, nobody
    creates it by hand): the DNS wait walks from the real parent zone's server
    (the test cluster's knotd) to the zone's authoritative server, and the role
    fails naming the host, the record it needs and what that server answered.
    Once the record exists (the role's RFC 2136 update on), a rerun converges."""
    host = f"never-{os.getpid()}-{int(time.time())}.smistio.test"  # the lab's zone keeps records between runs
    acme = json.loads(SITE_ACME.read_text())
    # one set of extra variables: a later -e would override the earlier one
    site = yaml.safe_load(SITE_VARS.read_text())
    run = run_playbook(SITE, "--tags", "bookinfo,ingress",
                       extra_vars=dict(site, ingress_tls_host=host, ingress_tls_dns_update=False,
                                       ingress_tls_dns_timeout=8, ingress_tls_https=False))
    assert run.rc != 0
    message = " ".join(run.failures())
    assert f"{host} does not resolve to the gateway" in message, message
    assert f"Create or fix the record {host}. A " in message, message
    # what the zone's authoritative server (not a resolver) answered
    assert acme["zone_server"] in message and "NXDOMAIN" in message, message
    again = run_playbook(SITE, "--tags", "bookinfo,ingress", extra_vars=dict(site, ingress_tls_host=host,
                                                                             ingress_tls_https=False))
    assert again.rc == 0, again.explain()
