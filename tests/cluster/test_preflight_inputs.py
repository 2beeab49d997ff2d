"""Issue 16: every input of a site run is checked before the first change.

site.yml's preflight checks, before it reads or changes the cluster, the
placeholders an example inventory marks (preflight_example_values) and, for
every role the run's tags select, the role's argument spec and its own input
checks (roles/<role>/tasks/inputs.yml, run with the role's defaults). So a
typo in the last role's input (the ACME e-mail, the host) stops the run
before Istio, Bookinfo or STRICT mTLS are installed.

Each case compares a snapshot of every object in the cluster (every listable
kind, with its resourceVersion; Helm's release Secrets included) before and
after the run. Run on the cluster as this module finds it: in `make test` a
cluster without Istio (the fresh case); the per-role files run the same kind
of inputs against a converged cluster.
"""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT, cluster_snapshot, run_playbook, snapshot_diff

SITE = REPO_ROOT / "playbooks/site.yml"
E2E = REPO_ROOT / "inventories/e2e"
PLACEHOLDERS = {"servicemesh_istio_cluster_name": "my-e2e-cluster", "servicemesh_istio_domain": "istio.example.com",
                "servicemesh_istio_acme_email": "admin@example.com"}

CASES = [
    # The roles' own input checks, one role after another in site.yml's order.
    ({"istio_install_version": "1.30"}, "istio_install_version '1.30' is not a version"),
    ({"istio_install_gateway_load_balancer_ip": "10.0.0.300"}, "istio_install_gateway_load_balancer_ip '10.0.0.300'"),
    ({"bookinfo_namespace": "-bad-"}, "bookinfo_namespace '-bad-' is not a valid namespace name"),
    ({"bookinfo_tag": "v1 latest"}, "bookinfo_tag 'v1 latest' is not a valid image tag"),
    ({"mtls_verify_target_url": "productpage:9080"}, "mtls_verify_target_url 'productpage:9080' is not an http(s) URL"),
    ({"mtls_verify_client_digest": "sha256:abc"}, "mtls_verify_client_digest 'sha256:abc'"),
    ({"ingress_tls_host": "Bookinfo_Host.example"}, "ingress_tls_host 'Bookinfo_Host.example' is not a valid DNS name"),
    ({"ingress_tls_acme_email": "mesh-admin"}, "ingress_tls_acme_email 'mesh-admin' is not an e-mail address"),
    # The roles' argument specs: types and choices.
    ({"bookinfo_replicas": "many"}, "bookinfo_replicas"),
    ({"ingress_tls_acme_solver": "tls-alpn-01"}, "ingress_tls_acme_solver"),
    ({"istio_install_wait_timeout": "soon"}, "istio_install_wait_timeout"),
]


def case_id(case) -> str:
    return next(iter(case[0]))


@pytest.mark.parametrize(("extra", "expected"), CASES, ids=[case_id(c) for c in CASES])
def test_a_bad_input_of_any_role_stops_the_run_before_any_change(extra, expected, tmp_path):
    before = cluster_snapshot()
    run = run_playbook(SITE, extra_vars=extra, report=tmp_path / "report.json")
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert expected in message, message
    # The end-of-run report names the preflight as the step that failed, and nothing done before it.
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["result"] == "failed" and report["failed_step"]["step"] == "preflight", report
    assert expected in report["failed_step"]["message"] and report["failed_step"]["done_before"] == [], report
    assert [s["name"] for s in report["steps"]] == ["preflight"], report["steps"]
    # Stopped in the preflight role, before the first role's own tasks.
    failed = [name for name, _host, result in run.task_results() if result.get("failed")]
    assert failed and all(name.startswith("servicemesh.istio.") for name in failed), failed
    assert not any(name.startswith("servicemesh.istio.istio_install : Install") for name in failed), failed
    assert run.changed == 0, run.explain()
    assert snapshot_diff(before, cluster_snapshot()) == []


def test_only_the_roles_the_tags_select_are_checked():
    """A bad bookinfo input does not stop a run that does not use bookinfo:
    with --tags istio --check, the run passes the preflight."""
    before = cluster_snapshot()
    run = run_playbook(SITE, "--tags", "istio", "--check", extra_vars={"bookinfo_namespace": "-bad-"})
    assert not [m for m in run.failures() if "bookinfo_namespace" in m], run.explain()
    assert snapshot_diff(before, cluster_snapshot()) == []


def test_the_example_inventory_is_refused_until_edited():
    """inventories/e2e as shipped: the run names each placeholder and the
    inventory, before it even reads the kubeconfig (which does not exist
    here). With the placeholders replaced, the next problem is the
    kubeconfig: the placeholder check came first."""
    run = run_playbook(SITE, inventory=str(E2E))
    assert run.rc != 0
    message = " ".join(run.failures())
    for name, value in PLACEHOLDERS.items():
        assert f"{name} is still the example value '{value}'" in message, message
    assert f"Edit the inventory ({E2E})" in message, message
    assert "kubeconfig" not in message, message

    edited = run_playbook(SITE, inventory=str(E2E), extra_vars={
        "servicemesh_istio_cluster_name": "prod-mesh", "servicemesh_istio_domain": "bookinfo.mesh.test",
        "servicemesh_istio_acme_email": "mesh-admin@servicemesh-istio.dev", "servicemesh_istio_kubeconfig": "/nonexistent/kubeconfig"})
    assert edited.rc != 0
    message = " ".join(edited.failures())
    assert "still the example value" not in message, message
    assert "servicemesh_istio_kubeconfig is '/nonexistent/kubeconfig', and there is no such file" in message, message
