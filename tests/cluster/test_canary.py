"""Issue: role canary, reviews v1/v2 at 80/20, the split verified, progressive
delivery with a metric gate and rollback, against the local test cluster.

Real: the kube-apiserver with Istio's DestinationRule and VirtualService CRDs
(their schemas) and istiod's validating webhook, which accept or refuse what
the role applies; istiod itself, whose pushed configuration (xDS, read with
servicemesh.istio.proxy_config_info) confirms each step of make-before-break:
the subset clusters on productpage's proxy before the VirtualService, then the
weights on productpage's route to reviews; the Bookinfo pods (Ready through
KWOK) that decide which subsets select a Ready pod; the real Prometheus of
the test cluster (the addon's Deployment, run by the workload runner) for the
progressive gates.

Stand-ins: no Envoy and no Bookinfo container run here, so no request ever
reaches a real productpage. The measured split is taken from
tests/cluster/standins.py's ProductpageSplitStandIn, which plays the ingress
gateway, productpage and reviews: it routes each request by the weights istiod
pushed to productpage's proxy and renders the version of the pods the
DestinationRule's subset selects (v1 no stars, v2 black, v3 red). Its answers
derive from what the role applied and istiod pushed, so a subset whose labels
select the wrong pods fails the measurement (a test below). The progressive
gates read Istio's metrics from the real Prometheus, which scrapes a test
exporter (a named simulation: no Envoy emits istio_requests_total here) whose
figures the test chooses, since no traffic exists to be measured.

The split measured from Prometheus (canary_measure_source=prometheus) reads
the real Prometheus too, but what it counts is derived, not chosen: the test
sends traffic (simulated users, a request every ~0.1 s) through the
ProductpageSplitStandIn above, which routes each request by the weights istiod
pushed and the DestinationRule's subset labels, and RoutedRequestsExporter
exposes istio_requests_total as the reviews pods' sidecars would report it
(reporter="destination"): one request per request the stand-in really routed
to a pod, under that pod's version label. Simulated: the users' requests, and
the exporter playing the sidecars' metrics endpoint (counter only, no latency).

Bookinfo runs in its own namespace; the module installs Istio and Bookinfo
with site.yml first and leaves an empty cluster afterwards (conftest.reset_cluster).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter

import pytest
from kubernetes import client

from conftest import (ISTIO_VERSION, REPO_ROOT, assert_istio_analyze_clean, cluster_snapshot, kubectl, reset_cluster,
                      run_playbook, snapshot_diff, unowned_objects, assert_no_key_material)
from standins import IstioMetricsSimulation, ProductpageSplitStandIn

SITE = REPO_ROOT / "playbooks/site.yml"
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
NS = "smistio-canary"
VARS = {"bookinfo_namespace": NS, "canary_namespace": NS}
# istioctl analyze runs once, in the first test (assert_istio_analyze_clean), not after every run.
QUICK = {"servicemesh_istio_analyze": False}
NETWORKING = ("networking.istio.io", "v1")
MIRROR = os.environ.get("SMI_FILE_MIRROR", "http://127.0.0.1:8879")
ADDON = f"{MIRROR}/istio/{ISTIO_VERSION}/samples/addons/prometheus.yaml"
V3 = {"name": "v3", "labels": {"version": "v3"}}
V1V2 = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]


def get(api, plural: str, name: str = "reviews") -> dict | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(*NETWORKING, NS, plural, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete(api, plural: str, name: str, namespace: str = NS) -> None:
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(*NETWORKING, namespace, plural, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def weights_of(vs: dict) -> dict:
    return {d["destination"]["subset"]: d["weight"] for d in vs["spec"]["http"][0]["route"]}


def results_of(run, suffix: str) -> list[dict]:
    return [r for name, _h, r in run.task_results() if name.endswith(suffix)]


def order_of(run, *suffixes: str) -> list[str]:
    """The suffixes, in the order their tasks ran (not skipped)."""
    out = []
    for name, _h, result in run.task_results():
        for suffix in suffixes:
            if name.endswith(suffix) and not result.get("skipped"):
                out.append(suffix)
    return out


def changes(before: dict) -> list[str]:
    """What changed since the snapshot, leaving out istiod's own bookkeeping ConfigMaps (leader election,
    IP auto-allocation), which it updates by itself."""
    return [line for line in snapshot_diff(before, cluster_snapshot())
            if not line.startswith("changed ConfigMap istio-system/")]


def canary(*args: str, **extra):
    return run_playbook(SITE, "--tags", "canary", *args, extra_vars={**VARS, **QUICK, **extra})


@pytest.fixture(scope="module")
def mesh(k8s):
    """Istio and Bookinfo (in NS) by site.yml, then the role's converge (80/20) once for the tests that read."""
    run = run_playbook(SITE, "--tags", "istio,bookinfo", extra_vars={"bookinfo_namespace": NS})
    assert run.rc == 0, run.explain()
    converge = canary()
    try:
        yield converge
    finally:
        reset_cluster()


def test_converge_makes_before_it_breaks_and_the_weights_reach_productpage(k8s, mesh):
    """The DestinationRule, istiod's push of its subset clusters, then the VirtualService and its weights on
    productpage's route: in that order, confirmed on what istiod pushes."""
    run = mesh
    assert run.rc == 0, run.explain()
    assert unowned_objects(run) == []  # what the run wrote itself carries the ownership label
    assert order_of(run, "Apply the DestinationRule with every subset the new routes need: dr_vs",
                    "Confirm istiod pushed the subset clusters to the callers' proxies",
                    "Apply the VirtualService with the weights",
                    "Confirm the weights reached the callers' routes") == [
        "Apply the DestinationRule with every subset the new routes need: dr_vs",
        "Confirm istiod pushed the subset clusters to the callers' proxies",
        "Apply the VirtualService with the weights",
        "Confirm the weights reached the callers' routes"], run.explain()
    clusters = results_of(run, "Confirm istiod pushed the subset clusters to the callers' proxies")[0]
    names = {c["name"] for c in clusters["proxies"][0]["clusters"]}
    assert {f"outbound|9080|v1|reviews.{NS}.svc.cluster.local",
            f"outbound|9080|v2|reviews.{NS}.svc.cluster.local"} <= names
    dr = get(k8s, "destinationrules")
    assert dr["spec"]["subsets"] == V1V2 and "trafficPolicy" not in dr["spec"], dr["spec"]
    assert weights_of(get(k8s, "virtualservices")) == {"v1": 80, "v2": 20}
    result = results_of(run, "Print the traffic split")[0]["canary_result"]
    assert result["weights"] == {"v1": 80, "v2": 20} and result["order"] == "dr_vs"
    assert [p["weights"] for p in result["pushed"]] == [["v1=80", "v2=20"]], result
    assert [p["source"] for p in result["pushed"]] == ["istiod"]
    assert_istio_analyze_clean(NS)


def test_second_run_changes_nothing(k8s, mesh):
    run = canary("-vvv")
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert_no_key_material(run.raw + run.stderr, k8s)


def test_check_diff_previews_a_shift_and_changes_nothing(mesh):
    before = cluster_snapshot()
    run = canary("--check", "--diff", canary_weights={"v1": 50, "v2": 50})
    assert run.rc == 0, run.explain()
    assert [n.rsplit(" : ", 1)[-1] for n in run.changed_tasks()] == ["Apply the VirtualService with the weights"], \
        run.explain()
    assert changes(before) == []


BAD = [
    ({"canary_weights": {"v1": 80, "v2": 30}}, "canary_weights must sum to 100, got 110"),
    ({"canary_weights": {"v1": 80.5, "v2": 19.5}}, "canary_weights.v1 must be an integer from 0 to 100"),
    ({"canary_weights": {"v1": 120, "v2": -20}}, "canary_weights.v1 must be an integer from 0 to 100"),
    ({"canary_weights": {}}, "canary_weights names no destination"),
    ({"canary_weights": {"v1": 50, "v9": 50}}, "canary_weights.v9 names a subset that canary_subsets does not define"),
    ({"canary_subsets": [{"name": "V_1", "labels": {"version": "v1"}}], "canary_weights": {"V_1": 100}},
     "canary_subsets[0].name 'V_1' is not a valid subset name"),
    ({"canary_measure": True, "canary_measure_source": "prometheus", "canary_measure_window": 0},
     "canary_measure_window must be a positive number of seconds, got 0"),
    ({"canary_measure": True, "canary_measure_source": "prometheus", "canary_prometheus_url": "prometheus:9090"},
     "canary_prometheus_url 'prometheus:9090' is not an http(s) URL"),
]
BAD_ON_CLUSTER = [
    ({"canary_subsets": [*V1V2, {"name": "v4", "labels": {"version": "v4"}}],
      "canary_weights": {"v1": 80, "v4": 20}},
     "canary_weights sends traffic to subsets that select no Ready pod"),
    ({"canary_service": "reviewz"}, "canary_service reviewz does not exist in namespace " + NS),
]


@pytest.mark.parametrize(("extra", "message"), BAD + BAD_ON_CLUSTER,
                         ids=[m.split(" ")[0] + "-" + str(i) for i, (_e, m) in enumerate(BAD + BAD_ON_CLUSTER)])
def test_bad_input_refused_before_any_change(mesh, extra, message):
    before = cluster_snapshot()
    run = canary(**extra)
    assert run.rc != 0 and run.changed == 0, run.explain()
    failures = " ".join(run.failures())
    assert message in failures and "Refused before any change" in failures, failures
    assert changes(before) == []


def test_static_bad_input_stops_site_before_its_first_role(mesh):
    """In a whole site run the preflight checks the canary's inputs before istio_install changes anything."""
    before = cluster_snapshot()
    run = run_playbook(SITE, extra_vars={**VARS, "canary_weights": {"v1": 90, "v2": 20}})
    assert run.rc != 0 and run.changed == 0, run.explain()
    assert any("canary_weights must sum to 100" in f for f in run.failures()), run.explain()
    assert changes(before) == []


def test_a_foreign_virtual_service_for_the_host_is_refused(k8s, mesh):
    body = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews-foreign", "namespace": NS},
            "spec": {"hosts": [f"reviews.{NS}.svc.cluster.local"],
                     "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}}
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(*NETWORKING, NS, "virtualservices", body)
    try:
        before = cluster_snapshot()
        run = canary(canary_weights={"v1": 50, "v2": 50})
        assert run.rc != 0 and run.changed == 0, run.explain()
        failures = " ".join(run.failures())
        assert f"{NS}/reviews-foreign (hosts reviews.{NS}.svc.cluster.local)" in failures, failures
        assert "canary_virtual_service_name" in failures
        assert changes(before) == []
    finally:
        delete(k8s, "virtualservices", "reviews-foreign")


def test_measured_split_through_the_standin_lies_in_the_band(k8s, mesh):
    """200 requests to the stand-in (see the module docstring), classified by stars, each share inside 3 sigma."""
    with ProductpageSplitStandIn(k8s, NS) as standin:
        run = canary(canary_measure=True, canary_measure_url=standin.url)
    assert run.rc == 0, run.explain()
    measured = results_of(run, "Print the traffic split")[0]["canary_result"]["measured"]
    assert measured["ok"] and measured["total"] == 200, measured
    rows = {r["subset"]: r for r in measured["subsets"]}
    assert set(rows) == {"v1", "v2"} and rows["v1"]["expected"] == 0.8, rows
    assert rows["v1"]["count"] + rows["v2"]["count"] == 200
    printed = results_of(run, "Print the measured split per subset")[0]["msg"]
    assert printed[0].startswith("v1: ") and "band" in printed[0] and "(3 sigma): inside" in printed[0], printed
    assert len(standin.decisions) == 200
    assert {d["version"] for d in standin.decisions} == {"v1", "v2"}


def test_a_subset_selecting_the_wrong_pods_fails_the_measurement(k8s, mesh):
    """A real misconfiguration the preflight cannot see: subset v2 labelled only app=reviews. istiod pushes 80/20
    to v1/v2 as asked and every pod of v2's cluster is Ready, but that cluster's endpoints are all three versions:
    the pages of the 20% show no, black and red stars, and the measurement fails, saying which share is off."""
    wrong = [V1V2[0], {"name": "v2", "labels": {"app": "reviews"}}]
    try:
        with ProductpageSplitStandIn(k8s, NS) as standin:
            run = canary(canary_subsets=wrong, canary_measure=True, canary_measure_url=standin.url)
        assert run.rc != 0, run.explain()
        failures = " ".join(run.failures())
        assert "The measured split of " + NS + "/reviews (requests) is not the one configured" in failures, failures
        assert "expected 0.0%, band 0.0%..0.0% (3 sigma): OUTSIDE" in failures, failures
        assert {d["version"] for d in standin.decisions} == {"v1", "v2", "v3"}, standin.decisions[:5]
    finally:
        fixed = canary()  # the right labels again
        assert fixed.rc == 0, fixed.explain()


def test_mtls_strict_keeps_istio_mutual(k8s, mesh):
    """With STRICT mTLS in the namespace the DestinationRule carries ISTIO_MUTUAL (the tutorial's
    destination-rule-all-mtls); DISABLE is never written."""
    pa = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
          "metadata": {"name": "default", "namespace": NS}, "spec": {"mtls": {"mode": "STRICT"}}}
    client.CustomObjectsApi(k8s).create_namespaced_custom_object("security.istio.io", "v1", NS,
                                                                 "peerauthentications", pa)
    try:
        run = canary()
        assert run.rc == 0 and run.changed == 1, run.explain()
        assert get(k8s, "destinationrules")["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}
        again = canary()
        assert again.rc == 0 and again.changed == 0, again.explain()
        clusters = results_of(run, "Confirm istiod pushed the subset clusters to the callers' proxies")[0]
        tls = {c["name"]: c.get("tls") for c in clusters["proxies"][0]["clusters"] if "|reviews." in c["name"]}
        assert tls[f"outbound|9080|v2|reviews.{NS}.svc.cluster.local"] == "istio_mutual", tls
    finally:
        client.CustomObjectsApi(k8s).delete_namespaced_custom_object("security.istio.io", "v1", NS,
                                                                     "peerauthentications", "default")


RESILIENCE = {"timeout": "10s", "retries": {"attempts": 3, "per_try_timeout": "2s", "retry_on": "5xx,connect-failure"},
              "connection_pool": {"max_connections": 100, "http1_max_pending_requests": 10,
                                  "max_requests_per_connection": 5},
              "outlier_detection": {"consecutive_5xx_errors": 5, "interval": "10s", "base_ejection_time": "30s",
                                    "max_ejection_percent": 50}}
CONFIRM_RESILIENCE = "Confirm the callers' proxies have the timeout, retries, connection pool and outlier detection"


def test_resilience_is_confirmed_on_the_pushed_config_and_an_older_destination_rule_fails_it(k8s, mesh):
    """canary_resilience, confirmed on what the real istiod pushes to productpage's proxy: the timeout and
    retries on its route to reviews, the connection pool and outlier detection on every reviews cluster.
    Then a wrong configuration: another DestinationRule for reviews, older than the role's, whose
    trafficPolicy istiod keeps when it merges the two; the role fails naming what was pushed instead."""
    host = f"reviews.{NS}.svc.cluster.local"
    run = canary(canary_resilience=RESILIENCE)
    assert run.rc == 0, run.explain()
    spec = get(k8s, "destinationrules")["spec"]
    assert spec["trafficPolicy"]["connectionPool"] == {"tcp": {"maxConnections": 100}, "http": {
        "http1MaxPendingRequests": 10, "maxRequestsPerConnection": 5}}, spec
    assert get(k8s, "virtualservices")["spec"]["http"][0]["timeout"] == "10s"
    (confirmed,) = results_of(run, CONFIRM_RESILIENCE)
    assert not confirmed.get("skipped"), run.explain()
    proxy = confirmed["proxies"][0]
    pushed = [c for c in proxy["clusters"] if c["direction"] == "outbound" and c["host"] == host]
    assert {c["subset"] for c in pushed} >= {"", "v1", "v2"}, pushed
    assert all(c["connection_pool"]["max_connections"] == 100 and c["connection_pool"]["max_requests_per_connection"] == 5
               and c["outlier_detection"]["consecutive_5xx_errors"] == 5 for c in pushed), pushed
    route = proxy["routes"][0]["routes"][0]
    assert route["timeout"] == "10s" and route["retries"]["attempts"] == 3, route
    result = results_of(run, "Print the traffic split")[0]["canary_result"]
    assert json.loads(result["resilience"]) == RESILIENCE, result

    custom = client.CustomObjectsApi(k8s)
    legacy = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
              "metadata": {"name": "legacy-reviews", "namespace": NS},
              "spec": {"host": "reviews", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}}}
    delete(k8s, "destinationrules", "reviews")  # so that the role's, created again, is the younger one
    custom.create_namespaced_custom_object(*NETWORKING, NS, "destinationrules", legacy)
    time.sleep(1.1)  # creationTimestamp has a resolution of one second
    try:
        failed = canary(canary_resilience=RESILIENCE, canary_pushed_config_timeout=5)
        assert failed.rc != 0
        message = " ".join(failed.failures())
        assert f"connection_pool.max_connections of host {host} is 7, expected 100" in message, message
        assert f"outlier_detection.interval of host {host} is unset, expected 10s" in message, message
        assert "the older one's trafficPolicy wins" in message, message
    finally:
        delete(k8s, "destinationrules", "legacy-reviews")


def test_adding_then_dropping_a_subset_orders_the_change(k8s, mesh):
    """Adding v3: DestinationRule first. Dropping v2: VirtualService first, then the DestinationRule."""
    add = canary(canary_subsets=[*V1V2, V3], canary_weights={"v1": 50, "v2": 25, "v3": 25})
    assert add.rc == 0, add.explain()
    assert order_of(add, "Apply the DestinationRule with every subset the new routes need: dr_vs",
                    "Apply the VirtualService with the weights") == [
        "Apply the DestinationRule with every subset the new routes need: dr_vs",
        "Apply the VirtualService with the weights"], add.explain()
    drop = canary(canary_subsets=[V1V2[0], V3], canary_weights={"v1": 50, "v3": 50})
    assert drop.rc == 0, drop.explain()
    assert order_of(drop, "Apply the VirtualService with the weights", "Confirm the weights reached the callers' routes",
                    "Apply the DestinationRule without the dropped subsets (after the routes left them)") == [
        "Apply the VirtualService with the weights", "Confirm the weights reached the callers' routes",
        "Apply the DestinationRule without the dropped subsets (after the routes left them)"], drop.explain()
    assert [s["name"] for s in get(k8s, "destinationrules")["spec"]["subsets"]] == ["v1", "v3"]
    assert weights_of(get(k8s, "virtualservices")) == {"v1": 50, "v3": 50}


def test_teardown_removes_the_virtual_service_then_the_destination_rule(k8s, mesh):
    run = run_playbook(TEARDOWN, "--tags", "canary", extra_vars=VARS)
    assert run.rc == 0, run.explain()
    deleted = results_of(run, "Delete the VirtualService, then the DestinationRule")[0]["results"]
    assert [r["item"]["kind"] for r in deleted if r.get("changed")] == ["VirtualService", "DestinationRule"]
    assert get(k8s, "virtualservices") is None and get(k8s, "destinationrules") is None
    again = run_playbook(TEARDOWN, "--tags", "canary", extra_vars=VARS)
    assert again.rc == 0 and again.changed == 0, again.explain()
    restored = canary()
    assert restored.rc == 0, restored.explain()


# ---------------------------------------------------------------------------
# Progressive delivery against the real Prometheus, fed by the simulation
# ---------------------------------------------------------------------------
def prometheus_query(prometheus_ip: str, query: str) -> list:
    url = f"http://{prometheus_ip}:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the test cluster's Prometheus on lo
        return json.loads(resp.read())["data"]["result"]


def wait_for_requests(prometheus_ip: str, version: str, at_least: float, timeout: float = 120) -> float:
    query = (f'sum(increase(istio_requests_total{{reporter="destination",destination_service_namespace="{NS}",'
             f'destination_service_name="reviews",destination_version="{version}"}}[1m]))')
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        try:
            result = prometheus_query(prometheus_ip, query)
        except OSError:  # the runner is still starting Prometheus after the addon was applied
            result = []
        seen = float(result[0]["value"][1]) if result else 0.0
        if seen >= at_least:
            return seen
        time.sleep(2)
    raise AssertionError(f"Prometheus saw {seen} requests to {version} in 1m after {timeout} s, wanted {at_least}")


@pytest.fixture(scope="module")
def prometheus(k8s, mesh):
    """The Istio Prometheus addon (the real Prometheus, run by the workload runner) and the metrics simulation."""
    applied = kubectl("apply", "-f", ADDON)
    assert applied.returncode == 0, applied.stderr
    simulation = IstioMetricsSimulation(k8s, NS)
    try:
        with simulation:
            # Only the failing canary v3 has traffic at first; v2 has none (the no-traffic case).
            simulation.set("v3", rps=5, error_ratio=0.3, latency_ms=900)
            ip = client.CoreV1Api(k8s).read_namespaced_service("prometheus", "istio-system").spec.cluster_ip
            yield ip, simulation
    finally:
        kubectl("delete", "--ignore-not-found", "-f", ADDON)


def progressive(prometheus_ip: str, *args: str, **extra):
    return canary(*args, canary_mode="progressive", canary_steps=[50, 100], canary_interval=1, canary_threshold=2,
                  canary_min_requests=20, canary_prometheus_url=f"http://{prometheus_ip}:9090", **extra)


def test_progressive_no_traffic_is_not_promoted(k8s, prometheus):
    """No request to the canary in the window: 'cannot decide', never a pass; rolled back, not promoted."""
    ip, _simulation = prometheus
    wait_for_requests(ip, "v3", 20)  # Prometheus scrapes the simulation: v3 has traffic, v2 has none
    run = progressive(ip)
    assert run.rc != 0, run.explain()
    failures = " ".join(run.failures())
    assert "rolled back to 100% v1 at 50%" in failures, failures
    assert "cannot decide: 0 requests to the canary in the window, at least 20 needed" in failures, failures
    assert weights_of(get(k8s, "virtualservices")) == {"v1": 100, "v2": 0}


def test_progressive_healthy_canary_is_promoted_and_a_rerun_resumes(k8s, prometheus):
    ip, simulation = prometheus
    simulation.set("v2", rps=5, error_ratio=0.0, latency_ms=40)
    wait_for_requests(ip, "v2", 20)
    run = progressive(ip)
    assert run.rc == 0, run.explain()
    result = results_of(run, "Print the traffic split")[0]["canary_result"]
    assert result["outcome"] == "promoted", result
    assert [(g["step"], g["verdict"]) for g in result["gates"]] == [(50, "pass"), (100, "pass")], result
    assert result["gates"][0]["success_rate"] == 100.0 and result["gates"][0]["p99_ms"] <= 50, result
    assert weights_of(get(k8s, "virtualservices")) == {"v1": 0, "v2": 100}
    again = progressive(ip)
    assert again.rc == 0 and again.changed == 0, again.explain()
    assert results_of(again, "Print the traffic split")[0]["canary_result"]["outcome"] == "already promoted"


PROMOTE_DR = "Apply the DestinationRule with every subset the new routes need: dr_vs"
PROMOTE_STEPS = (PROMOTE_DR, "Confirm istiod pushed the subset clusters to the callers' proxies",
                 "Apply the VirtualService with the weights", "Confirm the weights reached the callers' routes")


def promotion_tasks(run) -> list[str]:
    """The apply tasks run inside 'Promote the canary as the new stable subset' (included file), in order."""
    out, inside = [], False
    for name, _h, result in run.task_results():
        if name.endswith("Promote the canary as the new stable subset: v1 takes the labels of v2"):
            inside = True
            continue
        if inside and not result.get("skipped"):
            out.extend(step for step in PROMOTE_STEPS if name.endswith(step))
        if name.endswith("Record the progressive run"):
            break
    return out


def test_progressive_promote_as_stable(k8s, prometheus):
    """canary_promote_as_stable: once every step passed, the stable subset v1 takes v2's labels in the
    DestinationRule (applied first, its cluster confirmed pushed), then the VirtualService sends 100% to v1
    (confirmed on productpage's route). A rerun changes nothing; from a canary left at 100% (a run stopped after
    its last step) --check --diff previews the promotion and a run does it. Traffic through the stand-in then
    reaches only v2's pods, through v1's cluster."""
    ip, simulation = prometheus
    simulation.set("v2", rps=5, error_ratio=0.0, latency_ms=40)
    wait_for_requests(ip, "v2", 20)
    promoted_dr = [{"name": "v1", "labels": {"version": "v2"}}, V1V2[1]]
    try:
        start = canary()
        assert start.rc == 0 and weights_of(get(k8s, "virtualservices")) == {"v1": 80, "v2": 20}, start.explain()
        run = progressive(ip, canary_promote_as_stable=True)
        assert run.rc == 0, run.explain()
        result = results_of(run, "Print the traffic split")[0]["canary_result"]
        assert result["outcome"] == "promoted as stable", result
        assert [(g["step"], g["verdict"]) for g in result["gates"]] == [(50, "pass"), (100, "pass")], result
        assert result["weights"] == {"v1": 100, "v2": 0} and result["stable_labels"] == {"version": "v2"}, result
        assert promotion_tasks(run) == list(PROMOTE_STEPS), run.explain()
        assert get(k8s, "destinationrules")["spec"]["subsets"] == promoted_dr
        assert weights_of(get(k8s, "virtualservices")) == {"v1": 100, "v2": 0}
        pushed = results_of(run, "Confirm the weights reached the callers' routes")[-1]["proxies"][0]["routes"][0]
        assert [(d["subset"], d["weight"]) for d in pushed["routes"][0]["destinations"]] == [("v1", 100)], pushed

        again = progressive(ip, canary_promote_as_stable=True)
        assert again.rc == 0 and again.changed == 0, again.explain()
        assert results_of(again, "Print the traffic split")[0]["canary_result"]["outcome"] == \
            "already promoted as stable"

        with ProductpageSplitStandIn(k8s, NS) as standin:
            for attempt in range(30):
                with urllib.request.urlopen(standin.url, timeout=10) as resp:  # noqa: S310 - the stand-in on lo
                    assert resp.status == 200, (attempt, resp.status)
        assert {d["version"] for d in standin.decisions} == {"v2"}, standin.decisions[:5]
        assert {d["cluster"] for d in standin.decisions} == {f"outbound|9080|v1|reviews.{NS}.svc.cluster.local"}

        # A canary left at 100% by a run that stopped after its last step: previewed, then promoted.
        left = canary(canary_weights={"v1": 0, "v2": 100})
        assert left.rc == 0, left.explain()
        assert get(k8s, "destinationrules")["spec"]["subsets"] == V1V2
        before = cluster_snapshot()
        check = progressive(ip, "--check", "--diff", canary_promote_as_stable=True)
        assert check.rc == 0, check.explain()
        previewed = [n.rsplit(" : ", 1)[-1] for n in check.changed_tasks()]
        assert previewed == [PROMOTE_DR, "Apply the VirtualService with the weights"], check.explain()
        assert changes(before) == []
        resumed = progressive(ip, canary_promote_as_stable=True)
        assert resumed.rc == 0, resumed.explain()
        result = results_of(resumed, "Print the traffic split")[0]["canary_result"]
        assert result["outcome"] == "promoted as stable" and result["gates"] == [], result
        assert promotion_tasks(resumed) == list(PROMOTE_STEPS), resumed.explain()
        assert get(k8s, "destinationrules")["spec"]["subsets"] == promoted_dr
        assert weights_of(get(k8s, "virtualservices")) == {"v1": 100, "v2": 0}
    finally:
        back = canary()
        assert back.rc == 0, back.explain()


def test_progressive_failing_canary_is_rolled_back_with_its_figures(k8s, prometheus):
    ip, _simulation = prometheus
    run = progressive(ip, canary_subsets=[*V1V2, V3], canary_canary_subset="v3")
    assert run.rc != 0, run.explain()
    failures = " ".join(run.failures())
    assert "Canary v3 of " + NS + "/reviews rolled back to 100% v1 at 50%" in failures, failures
    assert "gate failed: success rate " in failures and "below 99%" in failures, failures
    assert "ms above 500 ms" in failures and "(2 gate(s) in a row; canary_threshold)" in failures, failures
    assert weights_of(get(k8s, "virtualservices")) == {"v1": 100, "v2": 0, "v3": 0}
    back = canary()
    assert back.rc == 0, back.explain()


# ---------------------------------------------------------------------------
# The split measured from Prometheus, counted from the requests the stand-in routed
# ---------------------------------------------------------------------------
class RoutedRequestsExporter(IstioMetricsSimulation):
    """istio_requests_total as the reviews pods' sidecars would report it (reporter="destination"), derived from
    the requests ProductpageSplitStandIn really routed: each request it sent to a reviews pod (by the weights
    istiod pushed to productpage's proxy and the DestinationRule's subset labels) counts once under that pod's
    version label (destination_version). Nothing here is chosen by the test. Exposed like the simulation it
    extends (an annotated Pod, its IP on the namespace's loopback); counter only, no latency histogram."""

    def __init__(self, api_client, namespace: str, standin: ProductpageSplitStandIn):
        super().__init__(api_client, namespace)
        self.name = "canary-routed-requests"
        self.standin = standin

    def routed(self) -> Counter:
        return Counter(d["version"] for d in list(self.standin.decisions) if d.get("version"))

    def exposition(self) -> str:
        lines = ["# TYPE istio_requests_total counter"]
        for version, count in sorted(self.routed().items()):
            lines.append(f'istio_requests_total{{reporter="destination",destination_service_namespace="{self.namespace}",'
                         f'destination_service_name="{self.service}",destination_version="{version}",'
                         f'destination_workload="{self.service}-{version}",response_code="200"}} {count}')
        return "\n".join(lines) + "\n"


class Users:
    """Simulated users: a request to the stand-in's product page every ~0.1 s while started."""

    def __init__(self, url: str):
        self.url, self.sent = url, 0
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=15)

    def _loop(self):
        while not self._stop.wait(0.1):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:  # noqa: S310 - the stand-in on lo
                    resp.read()
            except OSError:  # a 503 of the stand-in is an answer too: the users go on
                pass
            self.sent += 1


@pytest.fixture(scope="module")
def routed_traffic(k8s, prometheus):
    """The stand-in, its exporter scraped by the real Prometheus, and the users. The progressive tests'
    simulation stops counting (rate 0), so that only routed requests increase in the window."""
    ip, simulation = prometheus
    for version in list(simulation.series):
        simulation.set(version, rps=0)
    with ProductpageSplitStandIn(k8s, NS) as standin, RoutedRequestsExporter(k8s, NS, standin) as exporter:
        users = Users(standin.url)
        users.start()
        try:
            deadline = time.monotonic() + 90
            while not prometheus_query(ip, f'istio_requests_total{{pod="{exporter.name}"}}'):
                assert time.monotonic() < deadline, "Prometheus did not scrape the routed requests' exporter in 90 s"
                time.sleep(2)
            yield ip, exporter, users
        finally:
            users.stop()


def measure_from_prometheus(ip: str, **extra):
    return canary(**{"canary_measure": True, "canary_measure_source": "prometheus", "canary_measure_window": 45,
                     "canary_measure_requests": 100, "canary_prometheus_url": f"http://{ip}:9090", **extra})


def test_split_measured_from_prometheus_lies_in_the_band(k8s, routed_traffic):
    """istio_requests_total's increase by destination_version over the 45 s after the weights reached productpage,
    from the real Prometheus: each subset's share inside 3 sigma, printed per subset; the counts are at most what
    the stand-in routed during the run (Prometheus sees the window between its first and last scrape)."""
    ip, exporter, _users = routed_traffic
    routed_before = exporter.routed()
    run = measure_from_prometheus(ip)
    routed = exporter.routed() - routed_before
    assert run.rc == 0, run.explain()
    measured = results_of(run, "Print the traffic split")[0]["canary_result"]["measured"]
    assert measured["source"] == "prometheus" and measured["verdict"] == "pass" and measured["ok"], measured
    rows = {r["subset"]: r for r in measured["subsets"]}
    assert set(rows) == {"v1", "v2"} and rows["v1"]["expected"] == 0.8, rows
    assert 100 <= measured["total"] <= sum(routed.values()), (measured, routed)
    assert all(0 < rows[v]["count"] <= routed[v] for v in ("v1", "v2")), (rows, routed)
    printed = results_of(run, "Print the measured split per subset")[0]["msg"]
    assert printed[0].startswith("v1: ") and "(3 sigma): inside" in printed[0], printed
    waits = results_of(run, "Let traffic flow under the new weights before reading Prometheus: 45 s")[0]["results"]
    assert [r["item"] for r in waits] == [0, 15, 30], waits


def test_split_from_prometheus_that_does_not_hold_fails_with_the_figures(k8s, routed_traffic):
    """A subset v2 labelled only app=reviews: istiod pushes 80/20 as the VirtualService says, but the 20% reach all
    three versions, and what the reviews pods count (istio_requests_total by destination_version) is not 80/20:
    v3 shows up where the VirtualService routes nothing, and the role fails with the figures."""
    ip, exporter, _users = routed_traffic
    wrong = [V1V2[0], {"name": "v2", "labels": {"app": "reviews"}}]
    try:
        routed_before = exporter.routed()
        run = measure_from_prometheus(ip, canary_subsets=wrong)
        assert run.rc != 0, run.explain()
        assert (exporter.routed() - routed_before)["v3"] > 0
        failures = " ".join(run.failures())
        assert "The measured split of " + NS + "/reviews (prometheus) is not the one configured" in failures, failures
        assert "v3: " in failures and "expected 0.0%, band 0.0%..0.0% (3 sigma): OUTSIDE" in failures, failures
        assert weights_of(get(k8s, "virtualservices")) == {"v1": 80, "v2": 20}
    finally:
        fixed = canary()
        assert fixed.rc == 0, fixed.explain()


def test_split_from_prometheus_fails_when_the_virtual_service_changes_under_it(k8s, routed_traffic):
    """The role applies 50/50 and istiod pushes it to productpage; 5 s into the measurement window another hand
    (a kubectl edit, say) sets the VirtualService to 100/0. The stand-in routes by what istiod then pushes, the
    reviews pods' counts in Prometheus show v1 far above 50%, and the role fails with the figures: the weights it
    applied are not the split the traffic got."""
    ip, _exporter, _users = routed_traffic
    edited = threading.Event()

    def edit_once_applied():
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            vs = get(k8s, "virtualservices")
            if vs and weights_of(vs) == {"v1": 50, "v2": 50}:
                time.sleep(5)  # the role has confirmed the push by then and waits out its window
                route = [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 100},
                         {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0}]
                client.CustomObjectsApi(k8s).patch_namespaced_custom_object(
                    *NETWORKING, NS, "virtualservices", "reviews", {"spec": {"http": [{"route": route}]}})
                edited.set()
                return
            time.sleep(0.2)

    editor = threading.Thread(target=edit_once_applied, daemon=True)
    editor.start()
    try:
        run = measure_from_prometheus(ip, canary_weights={"v1": 50, "v2": 50})
        editor.join(timeout=10)
        assert edited.is_set(), run.explain()
        assert run.rc != 0, run.explain()
        failures = " ".join(run.failures())
        assert (f'The measured split of {NS}/reviews (prometheus) is not the one configured ({{"v1": 50, "v2": 50}})'
                in failures), failures
        assert "expected 50.0%" in failures and "OUTSIDE" in failures, failures
        assert not results_of(run, "Confirm the weights reached the callers' routes")[0].get("failed"), run.explain()
        assert weights_of(get(k8s, "virtualservices")) == {"v1": 100, "v2": 0}
    finally:
        restored = canary()
        assert restored.rc == 0, restored.explain()


def test_split_from_prometheus_without_traffic_cannot_decide(k8s, routed_traffic):
    """The users stop: the counters stay flat over the window, 0 requests counted: 'cannot decide', a failure,
    never a pass."""
    ip, _exporter, users = routed_traffic
    users.stop()
    run = measure_from_prometheus(ip, canary_measure_window=30)
    assert run.rc != 0, run.explain()
    failures = " ".join(run.failures())
    assert f"Cannot decide the split of {NS}/reviews: 0 requests counted in Prometheus over the 30 s" in failures, \
        failures
    assert "at least 100 needed (canary_measure_requests). No traffic is never a pass" in failures, failures
