"""wait_for_ready and preflight_info against the real API server of the test
cluster, both ways: in the controller's worker process (the action plugin's
fast path) and as a module (SERVICEMESH_ISTIO_IN_PROCESS=0). Both ways must
return the same result and refuse the same bad input with the same message.

Simulated: KWOK marks pods Running/Ready on the fake nodes (no container
runs); the real kube-scheduler decides where pods go, so an unschedulable pod
is really Pending with the scheduler's FailedScheduling event.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from conftest import CHART_REPO, ISTIO_VERSION, both_ways, results_of, stable
from conftest import module_play as play


@pytest.fixture
def web(k8s, namespace):
    """A 2-replica Deployment and a LoadBalancer Service in a fresh namespace."""
    labels = {"app": "web"}
    client.AppsV1Api(k8s).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/web:1"}]}}}})
    client.CoreV1Api(k8s).create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"name": "http", "port": 80}]}})
    return namespace


def test_wait_for_ready_both_ways_agree(tmp_path, monkeypatch, web):
    wait = {"name": "Wait", "servicemesh.istio.wait_for_ready": {
        "resources": [{"kind": "Deployment", "name": "web", "namespace": web},
                      {"kind": "Service", "name": "web", "namespace": web},
                      {"kind": "Namespace", "name": web},
                      {"kind": "CustomResourceDefinition", "label_selectors": ["app.kubernetes.io/part-of=nothing"],
                       "min_count": 0}],
        "pods": [{"namespace": web, "label_selectors": ["app=web"], "containers": ["app"], "min_pods": 2}],
        "timeout": 60, "initial_sleep": 0.25, "max_sleep": 1}}
    fast, module = both_ways(monkeypatch, play(tmp_path, [wait]))
    assert fast.rc == 0, fast.explain()
    assert module.rc == 0, module.explain()
    got_fast, got_module = results_of(fast, "Wait")[0], results_of(module, "Wait")[0]
    assert stable(got_fast) == stable(got_module)
    by_kind = {r["kind"]: r for r in got_fast["resources"]}
    assert by_kind["Deployment"]["ready"] and by_kind["Deployment"]["detail"].startswith("2/2 updated")
    address = by_kind["Service"]["addresses"][0]
    assert address.startswith("127.0.100."), by_kind["Service"]
    assert len(got_fast["pods"]) == 2 and all(p["ready"] and p["controller"] == "web" for p in got_fast["pods"])
    assert got_fast["pending"] == [] and got_fast["changed"] is False


def test_an_unschedulable_deployment_fails_with_why_and_shows_progress(tmp_path, monkeypatch, k8s, namespace):
    labels = {"app": "stuck"}
    client.AppsV1Api(k8s).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": {"smistio.test/no-such-node": "true"},
                     "containers": [{"name": "app", "image": "registry.invalid/stuck:1"}]}}}})
    wait = {"name": "Wait", "servicemesh.istio.wait_for_ready": {
        "resources": [{"kind": "Deployment", "name": "stuck", "namespace": namespace}],
        "pods": [{"namespace": namespace, "label_selectors": ["app=stuck"]}],
        "timeout": 6, "max_sleep": 1, "progress_interval": 2}}
    fast, module = both_ways(monkeypatch, play(tmp_path, [wait]))
    for run in (fast, module):
        assert run.rc != 0
        result = results_of(run, "Wait")[0]
        message = " ".join(result["msg"].split())
        assert message.startswith("Timed out after 6 s"), message
        assert f"Deployment {namespace}/stuck: 1/1 updated, 0/1 ready" in message, message
        assert "not Ready" in message and "phase Pending" in message, message
        assert "FailedScheduling" in message and "node affinity/selector" in message, message
    # Progress lines only on the in-process way, on standard error, while it waits.
    progress = [line for line in fast.stderr.splitlines() if "waiting" in line and "for 2 item(s)" in line]
    assert len(progress) >= 2, fast.stderr[-2000:]
    assert "waiting" not in module.stderr


@pytest.mark.parametrize("args, expected", [
    ({"resources": [{"kind": "Deployment", "name": "x"}]}, "resources[0]: Deployment is namespaced, give its namespace"),
    ({"resources": [{"kind": "Pod", "name": "x", "namespace": "y"}]}, "value of kind must be one of"),
    ({"resources": [{"kind": "Service", "name": "x", "namespace": "y", "label_selectors": ["a=b"]}]},
     "parameters are mutually exclusive: name|label_selectors"),
    ({"resources": [{"kind": "Namespace", "name": "x"}], "colour": "blue"}, "Unsupported parameters"),
])
def test_bad_input_is_refused_the_same_way_both_ways(tmp_path, monkeypatch, args, expected):
    fast, module = both_ways(monkeypatch, play(tmp_path, [{"name": "Wait", "servicemesh.istio.wait_for_ready": args}]))
    messages = []
    for run in (fast, module):
        assert run.rc != 0
        result = results_of(run, "Wait")[0]
        assert result.get("failed") and expected in result["msg"], result
        assert "attempts" not in result, "nothing should have been read"
        messages.append(result["msg"])
    assert messages[0] == messages[1]


def test_preflight_info_both_ways_agree(tmp_path, monkeypatch, k8s):
    task = {"name": "Read", "servicemesh.istio.preflight_info": {
        "helm_binary": "helm", "chart_repo": CHART_REPO, "charts": ["base", "istiod", "nonexistent"],
        "chart_version": ISTIO_VERSION,
        "dry_run_create": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "preflight-lb", "namespace": "default"},
             "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "preflight-bad", "namespace": "default"},
             "spec": {"type": "Bogus", "ports": [{"port": 80}]}}]}}
    missing = {"name": "Read missing", "servicemesh.istio.preflight_info": {
        "nodes": False, "helm_binary": "/nonexistent/helm", "chart_repo": "http://127.0.0.1:9/charts"}}
    fast, module = both_ways(monkeypatch, play(tmp_path, [task, missing]))
    assert fast.rc == 0, fast.explain()
    assert module.rc == 0, module.explain()
    for name in ("Read", "Read missing"):
        assert stable(results_of(fast, name)[0]) == stable(results_of(module, name)[0])
    info = results_of(fast, "Read")[0]
    assert info["kubernetes"]["version"].startswith("1.")
    assert [n["ready"] for n in info["nodes"]] == [True, True]
    assert info["helm"]["version"].startswith("3.") and info["helm"]["error"] == ""
    charts = info["chart_repo"]["charts"]
    assert charts["base"]["found"] and charts["base"]["url"].endswith(f"/base-{ISTIO_VERSION}.tgz")
    assert not charts["nonexistent"]["found"]
    lb, bad = info["dry_run"]
    assert lb["accepted"] and lb["message"] == "accepted"
    assert not bad["accepted"] and "Unsupported value" in bad["message"]
    gone = results_of(fast, "Read missing")[0]
    assert "kubernetes" not in gone, "nothing asked of the API server"
    assert gone["helm"]["version"] == "" and gone["helm"]["error"]
    assert gone["chart_repo"]["error"]
    # A dry run creates nothing.
    assert "preflight-lb" not in [svc.metadata.name for svc in client.CoreV1Api(k8s).list_namespaced_service("default").items]


def test_preflight_info_objects_read_as_k8s_info_does(tmp_path, monkeypatch, k8s):
    """preflight_info's objects, both ways, against kubernetes.core.k8s_info
    in the same play: by name, by labels, by name and labels (a name whose
    labels do not match reads as none, where k8s_info ignores the labels), all
    namespaces, a cluster-scoped kind, and a kind the API server does not
    serve (served=false, none)."""
    core = client.CoreV1Api(k8s)
    labels = {"app.kubernetes.io/managed-by": "smistio-objects-test"}
    for name in ("objects-a", "objects-b"):
        core.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels=labels if name == "objects-a" else {})))
    try:
        queries = [
            {"api_version": "v1", "kind": "ConfigMap", "namespace": "default", "name": "objects-a"},
            {"api_version": "v1", "kind": "ConfigMap", "namespace": "default",
             "label_selectors": ["app.kubernetes.io/managed-by=smistio-objects-test"]},
            {"api_version": "v1", "kind": "ConfigMap", "namespace": "default", "name": "objects-b",
             "label_selectors": ["app.kubernetes.io/managed-by=smistio-objects-test"]},
            {"api_version": "v1", "kind": "ConfigMap", "namespace": "default", "name": "objects-none"},
            {"api_version": "apps/v1", "kind": "Deployment"},
            {"api_version": "v1", "kind": "Namespace", "name": "kube-system"},
            {"api_version": "smistio.example/v1", "kind": "Nothing"},
        ]
        tasks = [{"name": "Read", "servicemesh.istio.preflight_info": {"nodes": False, "objects": queries}}]
        tasks += [{"name": f"k8s_info {i}", "kubernetes.core.k8s_info": {
            "api_version": q["api_version"], "kind": q["kind"], **{k: q[k] for k in ("namespace", "name", "label_selectors")
                                                                   if k in q}}} for i, q in enumerate(queries)]
        fast, module = both_ways(monkeypatch, play(tmp_path, tasks))
        assert fast.rc == 0, fast.explain()
        assert module.rc == 0, module.explain()
        for run in (fast, module):
            got = results_of(run, "Read")[0]["objects"]
            assert [o["kind"] for o in got] == [q["kind"] for q in queries]
            for i, found in enumerate(got):
                expected = results_of(run, f"k8s_info {i}")[0]["resources"]
                if i == 2:
                    # k8s_info reads a named object whatever its labels; objects
                    # filters it by them (what the canary's teardown relies on).
                    assert [o["metadata"]["name"] for o in expected] == ["objects-b"]
                    expected = []
                names = sorted((o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in found["resources"])
                assert names == sorted((o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in expected), i
                assert all(o["kind"] == queries[i]["kind"] and o["apiVersion"] == queries[i]["api_version"]
                           for o in found["resources"]), i
            assert [o["served"] for o in got] == [True] * 6 + [False]
            assert [len(o["resources"]) for o in got][:4] == [1, 1, 0, 0]
    finally:
        for name in ("objects-a", "objects-b"):
            core.delete_namespaced_config_map(name, "default")


def test_preflight_info_says_when_the_api_server_cannot_be_reached(tmp_path, monkeypatch):
    task = {"name": "Read", "servicemesh.istio.preflight_info": {"host": "https://127.0.0.1:9", "api_key": "s3cret-token",
                                                                 "validate_certs": False}}
    fast, module = both_ways(monkeypatch, play(tmp_path, [task]))
    for run in (fast, module):
        result = results_of(run, "Read")[0]
        assert run.rc != 0 and result["msg"].startswith("Cannot reach the Kubernetes API server at https://127.0.0.1:9"), result
        assert "s3cret-token" not in run.raw + run.stderr
