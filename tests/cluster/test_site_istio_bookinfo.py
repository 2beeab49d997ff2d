"""Issue 3: site.yml (istio_install + bookinfo) against the local test cluster.

Real: the kube-apiserver and its validation, the Istio charts (packaged from the
pinned istio.io/istio module) installed by Helm, istiod (pilot-discovery of the
pinned snapshot, run on the host by hack/testcluster/workload_runner.py) injecting
the istio-proxy sidecar through the real webhook path. Simulated: KWOK marks the
pods Running/Ready (no container runs), lb_controller.py assigns the gateway's
LoadBalancer IP.

The tests run in file order and share the cluster's state; the module leaves
the cluster without Istio or Bookinfo, as it found it.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from kubernetes import client

from conftest import (MIRROR, REPO_ROOT, VERSIONS, ISTIO_VERSION, analyzer_origin, assert_istio_analyze_clean,
                      kubectl, reset_cluster, run_playbook, unowned_objects, written_objects, assert_no_key_material)

SITE = REPO_ROOT / "playbooks/site.yml"
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
TAGS = ("--tags", "istio,bookinfo")
BOOKINFO_DEPLOYMENTS = {"details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3", "productpage-v1"}
UPSTREAM_BOOKINFO = MIRROR / "istio" / ISTIO_VERSION / "samples/bookinfo/platform/kube/bookinfo.yaml"
UPGRADE_VERSION = [v.split("=")[0] for v in VERSIONS["ISTIO_SNAPSHOTS"].split() if not v.startswith(ISTIO_VERSION)][0]


def helm_releases() -> dict[str, dict]:
    out = subprocess.run(["helm", "list", "-A", "-o", "json"], capture_output=True, text=True, check=True).stdout
    return {f"{r['namespace']}/{r['name']}": r for r in json.loads(out)}


def settle(core, timeout=180):
    """Wait until no namespace is Terminating (an earlier test's cleanup)."""
    deadline = time.monotonic() + timeout
    while True:
        terminating = [n.metadata.name for n in core.list_namespace().items if n.status.phase == "Terminating"]
        if not terminating:
            return
        assert time.monotonic() < deadline, f"namespaces still Terminating: {terminating}"
        time.sleep(1)


def snapshot(api) -> dict:
    """What a run must not touch: namespaces and their labels, workloads' and
    CRDs' generations, Services' specs, Helm release revisions."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    settle(core)
    ext = client.ApiextensionsV1Api(api)
    return {
        "namespaces": {n.metadata.name: n.metadata.labels for n in core.list_namespace().items},
        "deployments": {f"{d.metadata.namespace}/{d.metadata.name}": d.metadata.generation
                        for d in apps.list_deployment_for_all_namespaces().items},
        "services": {f"{s.metadata.namespace}/{s.metadata.name}": s.spec.to_dict()
                     for s in core.list_service_for_all_namespaces().items},
        "crds": {c.metadata.name: c.metadata.generation for c in ext.list_custom_resource_definition().items},
        "serviceaccounts": sorted(f"{s.metadata.namespace}/{s.metadata.name}"
                                  for s in core.list_service_account_for_all_namespaces().items),
        "helm": {k: r["revision"] for k, r in helm_releases().items()},
    }


def analysis(run) -> dict:
    """What site.yml's istio_analyze task returned (it must have run)."""
    found = [r for name, _h, r in run.task_results() if name.startswith("Analyze the namespaces the run touched")]
    assert found, f"site.yml did not run the analyzer: {[n for n, _h, _r in run.task_results()]}"
    return found[-1]


def bookinfo_pods(api):
    pods = client.CoreV1Api(api).list_namespaced_pod(
        "default", label_selector="app in (details,ratings,reviews,productpage)").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def test_check_mode_on_a_fresh_cluster_changes_nothing(k8s):
    before = snapshot(k8s)
    assert not [k for k in before["helm"] if k.startswith("istio-system/")], "cluster is not fresh"
    run = run_playbook(SITE, *TAGS, "--check")
    assert run.rc == 0, run.explain()
    assert snapshot(k8s) == before


def test_converge(k8s, tmp_path):
    report_file = tmp_path / "report.json"
    run = run_playbook(SITE, *TAGS, report=report_file)
    assert run.rc == 0, run.explain()
    # The end-of-run report (site_report callback): the steps that ran, what each verified, what the tags left out.
    report = json.loads(report_file.read_text())
    assert report["result"] == "ok" and report["failed_step"] is None, report
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["preflight", "istio_install", "bookinfo"], list(steps)
    assert steps["istio_install"]["status"] in ("changed", "ok") and steps["istio_install"]["verified"]["version"] == ISTIO_VERSION
    assert steps["bookinfo"]["verified"]["checks"] == [
        f"{len(BOOKINFO_DEPLOYMENTS)} of {len(BOOKINFO_DEPLOYMENTS)} pods Ready, "
        f"{len(BOOKINFO_DEPLOYMENTS)} with istio-proxy (2/2)"], steps["bookinfo"]
    assert "mtls_verify" in report["not_run"] and "ingress_tls" in report["not_run"], report["not_run"]
    releases = helm_releases()
    for name, chart in (("istio-base", "base"), ("istiod", "istiod"), ("istio-ingressgateway", "gateway")):
        release = releases[f"istio-system/{name}"]
        assert release["status"] == "deployed" and release["chart"] == f"{chart}-{ISTIO_VERSION}", release
    # Every Bookinfo pod has its sidecar (the real injector put it there) and is Ready.
    pods = bookinfo_pods(k8s)
    assert {p.metadata.labels["app"] + "-" + p.metadata.labels["version"] for p in pods} == BOOKINFO_DEPLOYMENTS
    for pod in pods:
        names = [c.name for c in pod.spec.containers] + [c.name for c in pod.spec.init_containers or []]
        assert "istio-proxy" in names, (pod.metadata.name, names)
        assert pod.metadata.annotations.get("sidecar.istio.io/status"), pod.metadata.name
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    # The gateway: label the Gateways select, an external IP, reported by the role.
    svc = client.CoreV1Api(k8s).read_namespaced_service("istio-ingressgateway", "istio-system")
    ip = svc.status.load_balancer.ingress[0].ip
    assert svc.spec.selector["istio"] == "ingressgateway"
    reported = [r.get("msg", "") for name, _h, r in run.task_results() if name.endswith("Report the gateway's address")]
    assert reported and ip in reported[0], reported
    # istiod's mesh config agrees with the gateway (cert-manager's HTTP-01 solver relies on it).
    mesh = client.CoreV1Api(k8s).read_namespaced_config_map("istio", "istio-system").data["mesh"]
    assert "ingressService: istio-ingressgateway" in mesh and "ingressSelector: ingressgateway" in mesh
    # site.yml's own analysis ran on the namespaces the run touched and found nothing ...
    own = analysis(run)
    assert own["ran"] and own["namespaces"] == ["istio-system", "default"], own
    assert own["failing"] == [] and own["counts"]["error"] == own["counts"]["warning"] == 0, own["summary"]
    # ... and neither does istioctl on its own.
    assert_istio_analyze_clean("istio-system", "default")
    # Everything the run wrote itself (not through Helm) carries the collection's ownership label.
    assert written_objects(run), "no object written by kubernetes.core.k8s found in the run's results"
    assert unowned_objects(run) == []


def test_second_run_changes_nothing(k8s):
    """At -vvv: no key material in what it printed (istiod's CA key among the Secrets)."""
    run = run_playbook(SITE, *TAGS, "-vvv")
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert_no_key_material(run.raw + run.stderr, k8s)
    assert_istio_analyze_clean("istio-system", "default")


def test_check_diff_on_the_converged_cluster_changes_nothing(k8s):
    before = snapshot(k8s)
    run = run_playbook(SITE, *TAGS, "--check", "--diff")
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert snapshot(k8s) == before


def test_bookinfo_tag_alone_on_an_installed_cluster():
    run = run_playbook(SITE, "--tags", "bookinfo")
    assert run.rc == 0 and run.changed == 0, run.explain()
    names = [name for name, _h, _r in run.task_results()]
    assert any("preflight" in n for n in names), "the preflight did not run under --tags bookinfo"
    # Of istio_install only its argument validation (tagged always by Ansible) runs.
    assert [n for n in names if "istio_install" in n and "Validating arguments" not in n] == [], names
    assert analysis(run)["namespaces"] == ["default"]
    assert_istio_analyze_clean("default")


def test_analyzer_reports_a_subset_no_destination_rule_defines(k8s):
    """A VirtualService routing to subset v9 of reviews, which no
    DestinationRule defines: istioctl reports IST0101, and site.yml fails
    naming the object and the code, unless the code is accepted with a reason."""
    custom = client.CustomObjectsApi(k8s)
    broken = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": "reviews-broken", "namespace": "default"},
              "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v9"}}]}]}}
    custom.create_namespaced_custom_object("networking.istio.io", "v1", "default", "virtualservices", broken)
    try:
        with pytest.raises(pytest.fail.Exception) as found:
            assert_istio_analyze_clean("default")
        assert "Error [IST0101] (VirtualService default/reviews-broken)" in str(found.value), str(found.value)
        assert "reviews+v9" in str(found.value)

        run = run_playbook(SITE, "--tags", "bookinfo")
        assert run.rc != 0 and run.changed == 0, run.explain()
        message = " ".join(run.failures())
        assert "istioctl analyze found 1 error(s) in default" in message, message
        assert "Error [IST0101] (VirtualService default/reviews-broken)" in message, message
        failing = [m for m in analysis(run)["messages"] if m["failing"]]
        assert [(m["code"], analyzer_origin(m)) for m in failing] == [
            ("IST0101", ("VirtualService", "default", "reviews-broken"))], failing

        reason = "the test's broken VirtualService"
        accepted = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"servicemesh_istio_analyze_accept": {"IST0101": reason}})
        assert accepted.rc == 0 and accepted.changed == 0, accepted.explain()
        assert any(reason in line and "IST0101" in line for line in analysis(accepted)["accepted"]), analysis(accepted)

        off = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"servicemesh_istio_analyze": False})
        assert off.rc == 0, off.explain()
        assert [r for n, _h, r in off.task_results() if n.startswith("Analyze the namespaces") and not r.get("skipped")] == []
    finally:
        custom.delete_namespaced_custom_object("networking.istio.io", "v1", "default", "virtualservices", "reviews-broken")
    assert_istio_analyze_clean("default")


def test_analyzer_warnings_fail_only_when_asked(k8s):
    """A Service with an unknown *.istio.io annotation: istioctl warns
    (IST0108); site.yml reports the warning and fails on it only with
    servicemesh_istio_analyze_fail_on_warnings."""
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="smistio-annotated", annotations={"networking.istio.io/smistio-unknown": "x"}),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80)])))
    try:
        messages = assert_istio_analyze_clean("default", accept={"IST0108": "the test's unknown annotation"})
        assert [analyzer_origin(m) for m in messages if m["code"] == "IST0108"] == [("Service", "default", "smistio-annotated")]
        run = run_playbook(SITE, "--tags", "bookinfo")
        assert run.rc == 0, run.explain()
        assert [w for w in analysis(run)["warnings_reported"] if "[IST0108] (Service default/smistio-annotated)" in w], analysis(run)
        strict = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"servicemesh_istio_analyze_fail_on_warnings": True})
        assert strict.rc != 0 and strict.changed == 0, strict.explain()
        message = " ".join(strict.failures())
        assert "Warning [IST0108] (Service default/smistio-annotated)" in message, message
    finally:
        core.delete_namespaced_service("smistio-annotated", "default")


def test_pods_created_before_the_label_get_their_sidecar(k8s):
    """Upstream's Bookinfo applied to an unlabelled namespace has no sidecars;
    the role labels the namespace and restarts exactly those Deployments."""
    ns = "bookinfo-prelabel"
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        applied = kubectl("apply", "-n", ns, "-f", str(UPSTREAM_BOOKINFO))
        assert applied.returncode == 0, applied.stderr
        deadline = time.monotonic() + 120
        while True:
            pods = [p for p in core.list_namespaced_pod(ns).items if p.status.phase == "Running"]
            if len(pods) == len(BOOKINFO_DEPLOYMENTS):
                break
            assert time.monotonic() < deadline, [p.metadata.name for p in pods]
            time.sleep(1)
        assert not [p for p in pods if "istio-proxy" in [c.name for c in p.spec.containers]]
        run = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": ns})
        assert run.rc == 0, run.explain()
        restarted = [r for name, _h, r in run.task_results() if name.endswith("Restart the Deployments whose pods have no sidecar")]
        assert restarted and sorted(i["item"] for i in restarted[0]["results"] if i.get("changed")) == sorted(BOOKINFO_DEPLOYMENTS)
        live = [p for p in core.list_namespaced_pod(ns).items if p.metadata.deletion_timestamp is None]
        assert len(live) == len(BOOKINFO_DEPLOYMENTS)
        assert all("istio-proxy" in [c.name for c in p.spec.containers] for p in live)
        again = run_playbook(SITE, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": ns})
        assert again.rc == 0 and again.changed == 0, again.explain()
        assert_istio_analyze_clean(ns)
    finally:
        cleanup = run_playbook(TEARDOWN, "--tags", "bookinfo",
                               extra_vars={"bookinfo_namespace": ns, "bookinfo_teardown_delete_namespace": True})
        assert cleanup.rc == 0, cleanup.explain()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"istio_install_profile": "fancy"}, "istio_install_profile"),
        ({"istio_install_version": "1.30"}, "istio_install_version '1.30' is not a version"),
        ({"istio_install_namespace": "Istio_System"}, "istio_install_namespace 'Istio_System' is not a valid namespace name"),
        ({"preflight_min_ready_nodes": 3}, "3 needed (preflight_min_ready_nodes)"),
        ({"bookinfo_namespace": "-bad-"}, "bookinfo_namespace '-bad-' is not a valid namespace name"),
        ({"servicemesh_istio_analyze_accept": {"IST0101": ""}}, "servicemesh_istio_analyze_accept a mapping"),
        ({"servicemesh_istio_analyze_accept": {"subset": "why"}}, "servicemesh_istio_analyze_accept a mapping"),
        ({"servicemesh_istio_analyze_fail_on_warnings": "sometimes"}, "must be true or false"),
    ],
    ids=["unknown-profile", "malformed-version", "invalid-namespace", "too-few-nodes", "invalid-bookinfo-namespace",
         "analyzer-accept-without-reason", "analyzer-accept-not-a-code", "analyzer-fail-on-warnings-not-bool"],
)
def test_bad_input_is_refused_before_any_change(k8s, extra, expected):
    before = snapshot(k8s)
    run = run_playbook(SITE, *TAGS, extra_vars=extra)
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert expected in message, message
    assert run.changed == 0, run.explain()
    assert snapshot(k8s) == before


def test_upgrade_to_another_version_in_the_mirror(k8s):
    run = run_playbook(SITE, *TAGS, extra_vars={"istio_install_version": UPGRADE_VERSION})
    assert run.rc == 0, run.explain()
    releases = helm_releases()
    for name, chart in (("istio-base", "base"), ("istiod", "istiod"), ("istio-ingressgateway", "gateway")):
        release = releases[f"istio-system/{name}"]
        assert release["chart"] == f"{chart}-{UPGRADE_VERSION}" and release["status"] == "deployed", release
        assert int(release["revision"]) >= 2
    crd = client.ApiextensionsV1Api(k8s).read_custom_resource_definition("virtualservices.networking.istio.io")
    assert crd.metadata.labels["app.kubernetes.io/version"] == UPGRADE_VERSION
    pods = bookinfo_pods(k8s)
    assert len(pods) == len(BOOKINFO_DEPLOYMENTS)
    assert all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)
    again = run_playbook(SITE, *TAGS, extra_vars={"istio_install_version": UPGRADE_VERSION})
    assert again.rc == 0 and again.changed == 0, again.explain()
    assert_istio_analyze_clean("istio-system", "default")


def test_teardown_leaves_no_release_and_no_bookinfo_object(k8s):
    run = run_playbook(TEARDOWN)
    assert run.rc == 0, run.explain()
    assert not [k for k in helm_releases() if k.startswith("istio-system/")]
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    assert not {d.metadata.name for d in apps.list_namespaced_deployment("default").items} & BOOKINFO_DEPLOYMENTS
    assert not [s.metadata.name for s in core.list_namespaced_service("default").items
                if s.metadata.name in {"details", "ratings", "reviews", "productpage"}]
    assert "istio-injection" not in (core.read_namespace("default").metadata.labels or {})
    assert "istio-system" not in {n.metadata.name for n in core.list_namespace().items}
    leftovers = [f"{c.metadata.namespace}/{c.metadata.name}" for c in core.list_config_map_for_all_namespaces().items
                 if c.metadata.name in ("istio-ca-root-cert", "istio-ca-crl")]
    assert leftovers == [], leftovers
    again = run_playbook(TEARDOWN)
    assert again.rc == 0 and again.changed == 0, again.explain()


def test_bookinfo_tag_alone_fails_clearly_without_istio(k8s):
    before = snapshot(k8s)
    run = run_playbook(SITE, "--tags", "bookinfo")
    assert run.rc != 0
    message = " ".join(run.failures())
    assert "Istio is not installed on this cluster" in message and "--tags istio" in message, message
    assert snapshot(k8s) == before


def test_teardown_keeps_the_crds_unless_asked(k8s):
    """teardown.yml above removed the releases, not Istio's CRDs (they go only
    with istio_install_teardown_crds, which test_istio_options.py's teardowns
    use and check). The module then leaves a fresh cluster (reset_cluster)."""
    try:
        crds = [c.metadata.name for c in client.ApiextensionsV1Api(k8s).list_custom_resource_definition().items]
        assert [c for c in crds if c.endswith(".istio.io")], crds
    finally:
        reset_cluster()
