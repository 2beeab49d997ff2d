"""Issue 17: site.yml starts each step as soon as what it needs holds, and keeps the real dependencies.

One converge of the whole site (what `make site` runs: every role, DNS-01 from
Pebble) on a fresh test cluster, watched two ways:

- every pod the API server creates, recorded from a watch on all namespaces
  as it is ADDED (what the injection webhook made of it, before anything else
  can change it), and every Deployment as it is created;
- when each task of the run started and ended (the json callback's times).

Real: the kube-apiserver, istiod's injection webhook, cert-manager, Pebble and
knotd. Simulated: KWOK marks pods Ready (no container runs), lb_controller.py
gives the gateway its address, the gateway stand-in answers the HTTP checks.

The tests run in file order and share the converge; the module leaves the
cluster empty (conftest.reset_cluster).
"""

from __future__ import annotations

import datetime
import threading

import pytest
from kubernetes import client, watch

from conftest import REPO_ROOT, SITE_VARS, helm_releases_any_status, reset_cluster, run_playbook

SITE = REPO_ROOT / "playbooks/site.yml"
BOOKINFO_NS = "default"
GATEWAY_NS = "istio-system"
BOOKINFO_APPS = {"details", "ratings", "reviews", "productpage"}


class Recorder:
    """Pods and Deployments as the API server first shows them (ADDED)."""

    def __init__(self, api):
        self.api = api
        self.pods: list[dict] = []
        self.deployments: dict[str, datetime.datetime] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(kind,), daemon=True) for kind in ("pod", "deploy")]

    def _watch(self, kind):
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        lister = core.list_pod_for_all_namespaces if kind == "pod" else apps.list_deployment_for_all_namespaces
        version = None
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(lister, resource_version=version, timeout_seconds=5):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    if event["type"] != "ADDED":
                        continue
                    if kind == "pod":
                        self.pods.append({
                            "namespace": obj.metadata.namespace, "name": obj.metadata.name,
                            "labels": obj.metadata.labels or {},
                            "containers": [c.name for c in obj.spec.containers],
                            "injected": (obj.metadata.annotations or {}).get("sidecar.istio.io/status", ""),
                        })
                    else:
                        self.deployments.setdefault(f"{obj.metadata.namespace}/{obj.metadata.name}",
                                                    obj.metadata.creation_timestamp)
            except Exception:  # pylint: disable=broad-except  # a watch that expired: list again
                version = None
            finally:
                w.stop()

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def task_times(run) -> list[tuple[str, float, float]]:
    """(task name without its role prefix, start, end) of every task that ran, in order."""
    out = []
    for play in run.plays:
        for task in play.get("tasks", []):
            results = list(task.get("hosts", {}).values())
            if not results or all(r.get("skipped") for r in results):
                continue
            dur = task["task"].get("duration") or {}
            if not dur.get("start"):
                continue
            start = datetime.datetime.fromisoformat(dur["start"].replace("Z", "+00:00")).timestamp()
            end = datetime.datetime.fromisoformat(dur["end"].replace("Z", "+00:00")).timestamp()
            out.append((task["task"]["name"].split(" : ", 1)[-1], start, end))
    return out


def first(times, prefix) -> tuple[str, float, float]:
    found = [t for t in times if t[0].startswith(prefix)]
    assert found, f"no task starting with {prefix!r} ran: {[t[0] for t in times]}"
    return found[0]


def last(times, prefix) -> tuple[str, float, float]:
    found = [t for t in times if t[0].startswith(prefix)]
    assert found, f"no task starting with {prefix!r} ran: {[t[0] for t in times]}"
    return found[-1]


def test_tls_alone_without_istio_fails_before_cert_manager_is_installed():
    """site.yml installs cert-manager's chart early, before istiod's wait; a run that would
    find no gateway to serve HTTPS on (--tags tls on a cluster without Istio)
    still fails before that first change, naming what is missing."""
    reset_cluster()
    run = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "tls")
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert "No ingress gateway Service istio-system/istio-ingressgateway" in message and "--tags istio" in message, message
    assert helm_releases_any_status() == [], "the run installed a chart before it failed"


@pytest.fixture(scope="module")
def converged(k8s, tmp_path_factory):
    reset_cluster()
    report = tmp_path_factory.mktemp("overlap") / "report.json"
    with Recorder(k8s) as seen:
        run = run_playbook(SITE, "-e", f"@{SITE_VARS}", report=report)
    try:
        yield run, seen, report
    finally:
        reset_cluster()


def test_the_whole_site_converges(converged):
    run, _seen, report = converged
    assert run.rc == 0 and run.failed == 0, run.explain()
    import json  # pylint: disable=import-outside-toplevel
    doc = json.loads(report.read_text())
    names = [s["name"] for s in doc["steps"]]
    assert set(names) == {"preflight", "istio_install", "bookinfo", "mtls_verify", "ingress_tls", "observability",
                          "canary"}, names
    steps = {s["name"]: s for s in doc["steps"]}
    # ingress_tls started early (cert-manager's chart, before istiod's wait and Bookinfo) and ended late: its
    # time is its own tasks', its span wider; istio_install's span holds Bookinfo's (its gateway wait comes after).
    tls, istio, bookinfo = steps["ingress_tls"], steps["istio_install"], steps["bookinfo"]
    assert istio["span"][0] < tls["span"][0] < bookinfo["span"][0] and tls["span"][1] > bookinfo["span"][1], steps
    assert istio["span"][0] < bookinfo["span"][0] and istio["span"][1] > bookinfo["span"][1], steps
    assert tls["seconds"] < tls["span"][1] - tls["span"][0], tls


def test_no_pod_of_bookinfo_or_the_gateway_was_ever_created_without_its_sidecar(converged):
    run, seen, _report = converged
    assert run.rc == 0, run.explain()
    bookinfo = [p for p in seen.pods if p["namespace"] == BOOKINFO_NS and p["labels"].get("app") in BOOKINFO_APPS]
    gateway = [p for p in seen.pods if p["namespace"] == GATEWAY_NS and p["labels"].get("istio") == "ingressgateway"]
    assert len(bookinfo) >= 6 and gateway, (len(bookinfo), len(gateway), [p["name"] for p in seen.pods])
    bare = [p["name"] for p in bookinfo if "istio-proxy" not in p["containers"] or not p["injected"]]
    assert not bare, f"Bookinfo pods created without the sidecar: {bare}"
    # The gateway's pod is injected too (the chart's gateway template): its proxy is the container itself.
    not_injected = [p["name"] for p in gateway if not p["injected"] and "istio-proxy" not in p["containers"]]
    assert not not_injected, f"gateway pods created before istiod's webhook answered: {not_injected}"


def test_steps_overlap_where_nothing_depends_on_them(converged):
    run, _seen, _report = converged
    times = task_times(run)
    cert_manager = first(times, "Install or upgrade cert-manager")
    control_plane = first(times, "Install or upgrade the control plane charts")
    gateway_chart = first(times, "Install or upgrade the ingress gateway chart")
    bookinfo_apply = first(times, "Label the namespace and deploy Bookinfo")
    gateway_wait = first(times, "Wait for the ingress gateway rolled out")
    certificate = first(times, "Apply the Certificate for")
    certificate_wait = first(times, "Wait for the Certificate:")
    # cert-manager's chart after Istio's (whose preflight comes before any change) and before istiod's wait.
    control_plane_wait = first(times, "Wait for Istio's CRDs Established, istiod rolled out, its injection webhook")
    assert control_plane[2] <= cert_manager[1] and cert_manager[2] <= control_plane_wait[1], (
        control_plane, cert_manager, control_plane_wait)
    # Bookinfo is deployed before the wait for the gateway's pods and IP: they come up meanwhile.
    assert gateway_chart[2] <= bookinfo_apply[1] < gateway_wait[1], (gateway_chart, bookinfo_apply, gateway_wait)
    # With DNS-01 the Certificate is requested before the wait for istiod and waited for after the HTTP part.
    assert certificate[2] <= control_plane_wait[1], (certificate, control_plane_wait)
    http_check = first(times, "GET /productpage through the gateway address")
    assert http_check[2] <= certificate_wait[1], (http_check, certificate_wait)
    # The observability addons are applied before the gateway's wait: they come up during the ingress part.
    addons = first(times, "Apply the addons")
    assert bookinfo_apply[2] <= addons[1] and addons[2] <= gateway_wait[1], (bookinfo_apply, addons, gateway_wait)


def test_what_depends_on_something_still_waits_for_it(converged):
    run, seen, _report = converged
    times = task_times(run)
    control_plane_wait = first(times, "Wait for Istio's CRDs Established, istiod rolled out, its injection webhook")
    webhook_probe = last(times, "Dry-run create a ClusterIssuer until it is accepted")
    issuer = first(times, "Apply the ClusterIssuer")
    bookinfo_apply = first(times, "Label the namespace and deploy Bookinfo")
    gateway_chart = first(times, "Install or upgrade the ingress gateway chart")
    gateway_wait = first(times, "Wait for the ingress gateway rolled out")
    dns_record = first(times, "Create the record by RFC 2136 dynamic update")
    # istiod's injector answers before any pod that needs it is created (the gateway's, Bookinfo's).
    assert control_plane_wait[2] <= gateway_chart[1] and control_plane_wait[2] <= bookinfo_apply[1]
    # cert-manager's webhook accepts resources before the ClusterIssuer is applied.
    assert webhook_probe[2] <= issuer[1], (webhook_probe, issuer)
    # The gateway's address is known before the DNS record points the host at it.
    assert gateway_wait[2] <= dns_record[1], (gateway_wait, dns_record)
    # Every Bookinfo Deployment was created after the control plane's wait ended.
    created = [t.timestamp() for name, t in seen.deployments.items() if name.startswith(f"{BOOKINFO_NS}/")]
    assert created and min(created) >= int(control_plane_wait[2]) - 1, (created, control_plane_wait)


def test_a_rerun_changes_nothing_and_skips_what_the_early_parts_did(converged):
    run, _seen, _report = converged
    assert run.rc == 0, run.explain()
    again = run_playbook(SITE, "-e", f"@{SITE_VARS}")
    assert again.rc == 0 and again.changed == 0, again.explain()
    names = [t[0] for t in task_times(again)]
    # cert-manager's chart once (the early part), the ClusterIssuer and Certificate once (tasks_from=issue).
    assert sum(n.startswith("Install or upgrade cert-manager") for n in names) == 1, names
    assert sum(n.startswith("Apply the Certificate for") for n in names) == 1, names
    assert sum(n.startswith("Wait for the Certificate:") for n in names) == 1, names
    assert sum(n.startswith("Apply the addons") for n in names) == 1, names


@pytest.mark.parametrize("tags, runs, skips", [
    ("istio", ["Install or upgrade the control plane charts", "Wait for the ingress gateway rolled out"],
     ["Label the namespace and deploy Bookinfo", "Install or upgrade cert-manager"]),
    ("tls", ["Install or upgrade cert-manager", "Apply the Certificate for", "Wait for the Certificate:"],
     ["Install or upgrade the control plane charts", "Label the namespace and deploy Bookinfo",
      "Apply the addons"]),
    ("bookinfo", ["Label the namespace and deploy Bookinfo"],
     ["Install or upgrade the control plane charts", "Wait for the ingress gateway rolled out",
      "Install or upgrade cert-manager"]),
])
def test_a_tag_runs_its_part_and_waits_for_what_it_needs(converged, tags, runs, skips):
    run, _seen, _report = converged
    assert run.rc == 0, run.explain()
    part = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", tags)
    assert part.rc == 0 and part.changed == 0, part.explain()
    names = [t[0] for t in task_times(part)]
    for prefix in runs:
        assert any(n.startswith(prefix) for n in names), (tags, prefix, names)
    for prefix in skips:
        assert not any(n.startswith(prefix) for n in names), (tags, prefix, names)
