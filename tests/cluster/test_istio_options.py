"""site.yml (istio_install + bookinfo) with two options no other test covers:
a revisioned control plane (istio_install_revision) and the ambient data plane
(istio_install_mode: ambient).

Real: the kube-apiserver, the Istio charts of the pinned snapshot installed by
Helm, istiod (pilot-discovery run on the host by
hack/testcluster/workload_runner.py, which follows the revision's Deployment and
Service ``istiod-<rev>``) injecting istio-proxy and validating config through
the real webhook path. Simulated: KWOK marks every pod Running/Ready, the
DaemonSet pods of istio-cni and ztunnel included; no CNI plugin, ztunnel or
Envoy ever runs, so ambient traffic capture is not tested here.

Each test starts from a cluster without Istio or Bookinfo (it fails at once
otherwise) and leaves it so: its own teardown.yml run (CRDs included) is
asserted, and if the test stops before it, teardown.yml runs in a finally.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from conftest import (ISTIO_VERSION, REPO_ROOT, assert_istio_analyze_clean, eventually, helm_releases_any_status,
                      run_playbook)

SITE = REPO_ROOT / "playbooks/site.yml"
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
TAGS = ("--tags", "istio,bookinfo")
ISTIO_NS = "istio-system"
BOOKINFO_NS = "default"
BOOKINFO_APPS = ("details", "ratings", "reviews", "productpage")
BOOKINFO_DEPLOYMENTS = {"details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3", "productpage-v1"}
MESH_LABELS = ("istio-injection", "istio.io/rev", "istio.io/dataplane-mode")
ISTIO_CHARTS = ("base", "istiod", "gateway", "cni", "ztunnel")

REVISION = "1-30-4"
REVISION_VARS = {"istio_install_revision": REVISION, "bookinfo_istio_revision": REVISION}
AMBIENT_VARS = {"istio_install_mode": "ambient", "istio_install_profile": "ambient", "bookinfo_dataplane": "ambient"}
WITH_CRDS = {"istio_install_teardown_crds": True}


# --- reading the cluster ------------------------------------------------------

def istio_releases() -> dict[str, dict]:
    """Helm releases of Istio's charts (any status), keyed namespace/name."""
    return {f"{r['namespace']}/{r['name']}": r for r in helm_releases_any_status()
            if r["namespace"] == ISTIO_NS or re.sub(r"-v?[0-9]+\.[0-9]+\.[0-9]+.*$", "", r["chart"]) in ISTIO_CHARTS}


def leftovers(api) -> list[str]:
    """Everything of Istio or Bookinfo still on the cluster; [] when it is clean."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    adm, rbac = client.AdmissionregistrationV1Api(api), client.RbacAuthorizationV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    out = [f"release {k} ({r['status']})" for k, r in istio_releases().items()]
    out += [f"namespace {n.metadata.name}" for n in core.list_namespace().items if n.metadata.name == ISTIO_NS]
    out += [f"crd {c.metadata.name}" for c in ext.list_custom_resource_definition().items if c.spec.group.endswith("istio.io")]
    out += [f"{kind} {w.metadata.name}" for kind, items in (
        ("mutatingwebhookconfiguration", adm.list_mutating_webhook_configuration().items),
        ("validatingwebhookconfiguration", adm.list_validating_webhook_configuration().items),
        ("clusterrole", rbac.list_cluster_role().items),
        ("clusterrolebinding", rbac.list_cluster_role_binding().items),
    ) for w in items if "istio" in w.metadata.name or "ztunnel" in w.metadata.name]
    out += [f"configmap {c.metadata.namespace}/{c.metadata.name}" for c in core.list_config_map_for_all_namespaces().items
            if c.metadata.name in ("istio-ca-root-cert", "istio-ca-crl")]
    out += [f"deployment {BOOKINFO_NS}/{d.metadata.name}" for d in apps.list_namespaced_deployment(BOOKINFO_NS).items
            if d.metadata.name in BOOKINFO_DEPLOYMENTS]
    out += [f"service {BOOKINFO_NS}/{s.metadata.name}" for s in core.list_namespaced_service(BOOKINFO_NS).items
            if s.metadata.name in BOOKINFO_APPS]
    labels = core.read_namespace(BOOKINFO_NS).metadata.labels or {}
    out += [f"label {k}={labels[k]} on namespace {BOOKINFO_NS}" for k in MESH_LABELS if k in labels]
    return out


def ready_nodes(api) -> list[str]:
    return sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items
                  if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []))


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def live_pods(api, namespace: str, selector: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def bookinfo_pods(api) -> list[client.V1Pod]:
    return live_pods(api, BOOKINFO_NS, f"app in ({','.join(BOOKINFO_APPS)})")


def container_names(pod: client.V1Pod) -> list[str]:
    return [c.name for c in pod.spec.containers] + [c.name for c in pod.spec.init_containers or []]


def proxy_container(pod: client.V1Pod) -> client.V1Container:
    return next(c for c in pod.spec.containers + (pod.spec.init_containers or []) if c.name == "istio-proxy")


def injected_revision(pod: client.V1Pod) -> str | None:
    """The revision istiod wrote into the pod's sidecar.istio.io/status annotation."""
    status = (pod.metadata.annotations or {}).get("sidecar.istio.io/status")
    return json.loads(status).get("revision") if status else None


def loopback_addresses() -> set[str]:
    """Addresses on the namespace's lo (the runner adds istiod's ClusterIPs as /32)."""
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True).stdout
    return {f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link.get("addr_info", [])}


def istiod_ready(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}:8080/ready", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def assert_releases(expected: dict[str, str]) -> None:
    """Exactly these Istio releases (name -> chart), deployed at the pinned version."""
    releases = istio_releases()
    assert set(releases) == {f"{ISTIO_NS}/{name}" for name in expected}, releases
    for name, chart in expected.items():
        release = releases[f"{ISTIO_NS}/{name}"]
        assert release["status"] == "deployed" and release["chart"] == f"{chart}-{ISTIO_VERSION}", release


def assert_converged_again(extra_vars: dict) -> None:
    again = run_playbook(SITE, *TAGS, extra_vars=extra_vars)
    assert again.rc == 0 and again.changed == 0, again.explain()


def assert_analyzed(run, revision: str = "") -> None:
    """site.yml's own analysis ran on Istio's and Bookinfo's namespaces (for
    the revision asked) and passed; istioctl run by the test agrees."""
    own = [r for name, _h, r in run.task_results() if name.startswith("Analyze the namespaces the run touched")]
    assert own and own[-1]["ran"] and own[-1]["namespaces"] == [ISTIO_NS, BOOKINFO_NS], own
    argv = own[-1]["command"]
    assert (argv[argv.index("--revision") + 1] == revision) if revision else "--revision" not in argv, argv
    assert own[-1]["failing"] == [], own[-1]["summary"]
    # With the default revision's view, istioctl warns (IST0146) that the
    # gateway's `image: auto` matches no injector: the revision's does.
    assert_istio_analyze_clean(ISTIO_NS, BOOKINFO_NS, revision=revision)


def assert_teardown_leaves_nothing(api, extra_vars: dict, rerun: bool = True) -> None:
    """teardown.yml with the test's extra vars (and the CRDs) removes every
    release and object; a second run (unless rerun is false) changes nothing."""
    down = run_playbook(TEARDOWN, extra_vars={**extra_vars, **WITH_CRDS})
    assert down.rc == 0, down.explain()
    assert istio_releases() == {}
    assert leftovers(api) == []
    if rerun:
        again = run_playbook(TEARDOWN, extra_vars={**extra_vars, **WITH_CRDS})
        assert again.rc == 0 and again.changed == 0, again.explain()


@contextlib.contextmanager
def clean_before_and_after(api, extra_vars: dict):
    """Refuse a cluster that has Istio or Bookinfo; leave none behind, also
    when the test stops before its own teardown."""
    dirty = leftovers(api)
    if dirty:
        pytest.fail(f"the cluster is not clean before the test (playbooks/teardown.yml "
                    f"-e istio_install_teardown_crds=true removes it): {dirty}")
    try:
        yield
    finally:
        if leftovers(api):
            rescue = run_playbook(TEARDOWN, extra_vars={**extra_vars, **WITH_CRDS})
            remaining = leftovers(api)
            assert rescue.rc == 0 and remaining == [], f"cleanup left {remaining}\n{rescue.explain()}"


def invalid_destination_rule(labels: dict[str, str]) -> dict:
    """Passes the CRD's schema (checked before validating admission); istiod refuses it."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews-dup", "labels": labels},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}] * 2},
    }


# --- the tests ----------------------------------------------------------------

def test_revision_install(k8s):
    """istio_install_revision: istiod-<rev> release, Deployment, Service and
    webhooks; Bookinfo's namespace labelled istio.io/rev (not istio-injection)
    and every pod injected by that revision's istiod; no-change rerun; teardown."""
    core, apps, adm = client.CoreV1Api(k8s), client.AppsV1Api(k8s), client.AdmissionregistrationV1Api(k8s)
    istiod = f"istiod-{REVISION}"
    with clean_before_and_after(k8s, REVISION_VARS):
        run = run_playbook(SITE, *TAGS, extra_vars=REVISION_VARS)
        assert run.rc == 0, run.explain()
        assert_releases({"istio-base": "base", istiod: "istiod", "istio-ingressgateway": "gateway"})

        # The control plane carries the revision; there is no unrevisioned one.
        dep = apps.read_namespaced_deployment(istiod, ISTIO_NS)
        assert dep.metadata.labels.get("istio.io/rev") == REVISION, dep.metadata.labels
        assert any(c.type == "Available" and c.status == "True" for c in dep.status.conditions or []), dep.status
        assert dep.status.ready_replicas == dep.spec.replicas, dep.status
        assert [d.metadata.name for d in apps.list_namespaced_deployment(ISTIO_NS, label_selector="app=istiod").items] == [istiod]

        # The revision's injector calls the revision's Service, with the caBundle istiod patched in.
        injectors = {m.metadata.name: m for m in adm.list_mutating_webhook_configuration().items if "istio" in m.metadata.name}
        assert set(injectors) == {f"istio-sidecar-injector-{REVISION}"}, set(injectors)
        for hook in injectors[f"istio-sidecar-injector-{REVISION}"].webhooks:
            assert hook.client_config.service.name == istiod and hook.client_config.service.namespace == ISTIO_NS, hook.name
            assert hook.client_config.ca_bundle, f"{hook.name}: istiod did not patch the caBundle"

        # The test cluster's runner follows the revisioned Service: pilot-discovery
        # serves on istiod-<rev>'s ClusterIP, a /32 on the namespace's loopback.
        addr = core.read_namespaced_service(istiod, ISTIO_NS).spec.cluster_ip
        assert f"{addr}/32" in loopback_addresses(), (addr, loopback_addresses())
        assert istiod_ready(addr), f"no pilot-discovery ready on {addr}:8080"

        # The namespace selects the revision, not the default injector.
        labels = core.read_namespace(BOOKINFO_NS).metadata.labels or {}
        assert labels.get("istio.io/rev") == REVISION and "istio-injection" not in labels, labels

        # Every Bookinfo pod (and the gateway) got istio-proxy from this revision's istiod.
        pods = bookinfo_pods(k8s)
        assert {f"{p.metadata.labels['app']}-{p.metadata.labels['version']}" for p in pods} == BOOKINFO_DEPLOYMENTS
        assert len(pods) == len(BOOKINFO_DEPLOYMENTS), [p.metadata.name for p in pods]
        for pod in pods:
            assert "istio-proxy" in container_names(pod), (pod.metadata.name, container_names(pod))
            assert injected_revision(pod) == REVISION, (pod.metadata.name, pod.metadata.annotations)
            env = {e.name: e.value for e in proxy_container(pod).env or []}
            assert env.get("CA_ADDR") == f"{istiod}.{ISTIO_NS}.svc:15012", (pod.metadata.name, env.get("CA_ADDR"))
            assert is_ready(pod), pod.metadata.name
        gateway = live_pods(k8s, ISTIO_NS, "istio=ingressgateway")
        assert gateway and all(injected_revision(p) == REVISION and proxy_container(p).image != "auto" for p in gateway), \
            [(p.metadata.name, p.metadata.annotations) for p in gateway]

        # Config validation goes to the revision too: base's default validator
        # (defaultRevision) and the revision's own, both armed by istiod.
        validators = (f"istio-validator-{REVISION}-{ISTIO_NS}", "istiod-default-validator")

        def armed():
            hooks = [w for name in validators for w in adm.read_validating_webhook_configuration(name).webhooks]
            assert all(w.client_config.service.name == istiod for w in hooks), [w.client_config.service for w in hooks]
            return all(w.failure_policy == "Fail" and w.client_config.ca_bundle for w in hooks)

        eventually(f"istiod-{REVISION} to arm {validators} (caBundle, failurePolicy Fail)", armed)
        custom = client.CustomObjectsApi(k8s)
        for rule_labels in ({}, {"istio.io/rev": REVISION}):
            with pytest.raises(client.ApiException) as refused:
                custom.create_namespaced_custom_object("networking.istio.io", "v1", BOOKINFO_NS, "destinationrules",
                                                       invalid_destination_rule(rule_labels), dry_run="All")
            assert "validation.istio.io" in refused.value.body and "duplicate subset names" in refused.value.body, \
                (rule_labels, refused.value.body)

        assert_analyzed(run, REVISION)
        assert_converged_again(REVISION_VARS)
        assert_teardown_leaves_nothing(k8s, REVISION_VARS)
        eventually(f"the runner to stop istiod-{REVISION} and take {addr} off lo",
                   lambda: f"{addr}/32" not in loopback_addresses(), 30)


def test_ambient_mode(k8s):
    """istio_install_mode ambient: istio-cni and ztunnel releases and DaemonSets
    on every node, the charts configured for ambient, Bookinfo's namespace
    labelled istio.io/dataplane-mode=ambient and its pods Ready without a
    sidecar; no-change rerun; teardown."""
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    with clean_before_and_after(k8s, AMBIENT_VARS):
        run = run_playbook(SITE, *TAGS, extra_vars=AMBIENT_VARS)
        assert run.rc == 0, run.explain()
        assert_releases({"istio-base": "base", "istiod": "istiod", "istio-cni": "cni", "ztunnel": "ztunnel",
                         "istio-ingressgateway": "gateway"})

        # The node agents: one Ready pod on each of the (fake) nodes.
        nodes = ready_nodes(k8s)
        assert len(nodes) == 2, nodes
        for name in ("istio-cni-node", "ztunnel"):
            ds = apps.read_namespaced_daemon_set(name, ISTIO_NS)
            status = ds.status
            assert status.observed_generation == ds.metadata.generation, status
            assert (status.desired_number_scheduled == status.number_ready == status.number_available
                    == status.updated_number_scheduled == len(nodes)), status
            pods = live_pods(k8s, ISTIO_NS, ",".join(f"{k}={v}" for k, v in ds.spec.selector.match_labels.items()))
            assert sorted(p.spec.node_name for p in pods) == nodes, [(p.metadata.name, p.spec.node_name) for p in pods]
            assert all(is_ready(p) for p in pods), [p.metadata.name for p in pods if not is_ready(p)]

        # The ambient profile reached the charts: istio-cni and istiod run in ambient mode.
        cni_config = core.read_namespaced_config_map("istio-cni-config", ISTIO_NS).data
        assert cni_config.get("AMBIENT_ENABLED") == "true", cni_config
        discovery = apps.read_namespaced_deployment("istiod", ISTIO_NS).spec.template.spec.containers[0]
        assert {e.name: e.value for e in discovery.env or []}.get("PILOT_ENABLE_AMBIENT") == "true"

        labels = core.read_namespace(BOOKINFO_NS).metadata.labels or {}
        assert labels.get("istio.io/dataplane-mode") == "ambient", labels
        assert "istio-injection" not in labels and "istio.io/rev" not in labels, labels

        # No sidecar anywhere in Bookinfo (istiod's injector left the pods alone), every pod Ready.
        pods = bookinfo_pods(k8s)
        assert {f"{p.metadata.labels['app']}-{p.metadata.labels['version']}" for p in pods} == BOOKINFO_DEPLOYMENTS
        assert len(pods) == len(BOOKINFO_DEPLOYMENTS), [p.metadata.name for p in pods]
        for pod in pods:
            assert not {"istio-proxy", "istio-init"} & set(container_names(pod)), (pod.metadata.name, container_names(pod))
            assert "sidecar.istio.io/status" not in (pod.metadata.annotations or {}), pod.metadata.name
            assert is_ready(pod), pod.metadata.name

        assert_analyzed(run)
        assert_converged_again(AMBIENT_VARS)
        assert_teardown_leaves_nothing(k8s, AMBIENT_VARS)
