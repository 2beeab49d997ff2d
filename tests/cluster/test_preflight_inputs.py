"""Issue 16: every input of a site run is checked before the first change.

site.yml's preflight checks, before it reads or changes the cluster, the
placeholders an example inventory marks (preflight_example_values) and, for
every role the run's tags select, the role's argument spec and its own input
checks (roles/<role>/tasks/inputs.yml, run with the role's defaults). So a
typo in the last role's input (the ACME e-mail, the host) stops the run
before Istio, Bookinfo or STRICT mTLS are installed.

Each case compares a snapshot of every object in the cluster (every listable
kind, with its resourceVersion; Helm's release Secrets included) before and
after the run. Run here on the cluster as this module finds it (in `make
test` a fresh one), and again on a converged cluster (test_observability.py,
whose module has Istio, Bookinfo and the addons). All cases run in one
site.yml run, one inventory host a case (run_matrix).
"""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT, changes_by_others, cluster_snapshot, run_per_host, run_playbook, snapshot_diff

SITE = REPO_ROOT / "playbooks/site.yml"
E2E = REPO_ROOT / "inventories/e2e"
PLACEHOLDERS = {"servicemesh_istio_cluster_name": "my-e2e-cluster", "servicemesh_istio_domain": "istio.example.com",
                "servicemesh_istio_acme_email": "admin@example.com"}

CASES = [
    # istio_install: its own checks, then its argument spec (types and choices).
    ({"istio_install_version": "1.30"}, "istio_install_version '1.30' is not a version"),
    ({"istio_install_gateway_load_balancer_ip": "10.0.0.300"}, "istio_install_gateway_load_balancer_ip '10.0.0.300'"),
    ({"istio_install_namespace": "Istio-System"}, "istio_install_namespace 'Istio-System' is not a valid namespace name"),
    ({"istio_install_gateway_name": "gw_1"}, "istio_install_gateway_name 'gw_1' is not a valid Service name"),
    ({"istio_install_revision": "1.30"}, "istio_install_revision '1.30' must be empty or a lower-case DNS label"),
    ({"istio_install_mode": "ambient"}, "istio_install_mode 'ambient' needs istio_install_profile 'ambient'"),
    ({"istio_install_extra_values": {"pilot": {}}}, "istio_install_extra_values has unknown keys"),
    ({"istio_install_gateway_ip_timeout": 0}, "istio_install_wait_timeout and istio_install_gateway_ip_timeout must be positive"),
    ({"istio_install_profile": "fancy"}, "istio_install_profile"),
    ({"istio_install_gateway_service_type": "External"}, "istio_install_gateway_service_type"),
    ({"istio_install_gateway_replicas": "two"}, "istio_install_gateway_replicas"),
    ({"istio_install_wait_timeout": "soon"}, "istio_install_wait_timeout"),
    # bookinfo
    ({"bookinfo_namespace": "-bad-"}, "bookinfo_namespace '-bad-' is not a valid namespace name"),
    ({"bookinfo_tag": "v1 latest"}, "bookinfo_tag 'v1 latest' is not a valid image tag"),
    ({"bookinfo_dataplane": "ztunnel"}, "bookinfo_dataplane must be sidecar or ambient"),
    ({"bookinfo_istio_revision": "Rev_1"}, "bookinfo_istio_revision 'Rev_1' must be empty or a lower-case DNS label"),
    ({"bookinfo_replicas": "many"}, "bookinfo_replicas"),
    ({"bookinfo_image_pull_policy": "Sometimes"}, "bookinfo_image_pull_policy"),
    ({"bookinfo_ready_timeout": "forever"}, "bookinfo_ready_timeout"),
    # mtls_verify
    ({"mtls_verify_target_url": "productpage:9080"}, "mtls_verify_target_url 'productpage:9080' is not an http(s) URL"),
    ({"mtls_verify_client_digest": "sha256:abc"}, "mtls_verify_client_digest 'sha256:abc'"),
    ({"mtls_verify_namespace": "Bad NS"}, "mtls_verify_namespace 'Bad NS' is not a valid namespace name"),
    ({"mtls_verify_peer_authentication_name": "Default!"}, "mtls_verify_peer_authentication_name 'Default!' is not a valid"),
    ({"mtls_verify_client_tag": "8.1 x"}, "mtls_verify_client_tag '8.1 x' is not a valid image tag"),
    ({"mtls_verify_client_timeout": 0}, "mtls_verify_client_timeout and mtls_verify_curl_max_time must be positive"),
    ({"mtls_verify_scope": "cluster"}, "mtls_verify_scope"),
    ({"mtls_verify_mode": "DISABLE"}, "mtls_verify_mode"),
    # ingress_tls
    ({"ingress_tls_host": "Bookinfo_Host.example"}, "ingress_tls_host 'Bookinfo_Host.example' is not a valid DNS name"),
    ({"ingress_tls_host": "https://bookinfo.example.com/"}, "ingress_tls_host 'https://bookinfo.example.com/' is not a valid"),
    ({"ingress_tls_host": "*.example.com"}, "ingress_tls_host '*.example.com' is a wildcard. This role serves one host"),
    ({"ingress_tls_acme_email": "mesh-admin"}, "ingress_tls_acme_email 'mesh-admin' is not an e-mail address"),
    ({"ingress_tls_acme_email": "admin@example.com"}, "ingress_tls_acme_email 'admin@example.com' is in a reserved domain"),
    ({"ingress_tls_acme_environment": "custom", "ingress_tls_acme_server": "http://acme.test/directory"},
     "ingress_tls_acme_environment custom needs ingress_tls_acme_server"),
    ({"ingress_tls_gateway_namespace": "Istio System"}, "ingress_tls_gateway_namespace 'Istio System' must be namespace"),
    ({"ingress_tls_ca_bundle": "/nonexistent/ca.pem"}, "ingress_tls_ca_bundle '/nonexistent/ca.pem' is not a readable file"),
    ({"ingress_tls_certificate_timeout": 0}, "Every *_timeout must be at least 1 second"),
    ({"ingress_tls_acme_solver": "tls-alpn-01"}, "ingress_tls_acme_solver"),
    ({"ingress_tls_dns_tsig_algorithm": "hmac-sha3"}, "ingress_tls_dns_tsig_algorithm"),
    ({"ingress_tls_dns_port": "fifty-three"}, "ingress_tls_dns_port"),
    # observability
    ({"observability_addons": ["prometheus", "nagios"]}, "observability_addons names unknown addons"),
    ({"observability_exposure": "nodeport"}, "observability_exposure must be one of"),
    ({"observability_kiali_auth_strategy": "openid"}, "observability_kiali_auth_strategy must be token or anonymous"),
    ({"observability_allowed_source_ranges": ["10.0.0.0/33"]}, "observability_allowed_source_ranges has malformed CIDRs"),
    ({"observability_prometheus_url": "prometheus:9090"}, "observability_prometheus_url 'prometheus:9090' must be an http(s) URL"),
    ({"observability_exposure": "gateway", "observability_domain": ""},
     "observability_exposure is gateway but observability_domain is empty"),
    ({"observability_ready_timeout": "later"}, "observability_ready_timeout"),
    # canary
    ({"canary_weights": {"v1": 80, "v2": 30}}, "canary_weights must sum to 100, got 110"),
    ({"canary_weights": {"v1": 80, "v3": 20}}, "canary_weights.v3 names a subset that canary_subsets does not define"),
    ({"canary_subsets": [{"name": "V1", "labels": {"version": "v1"}}]}, "canary_subsets[0].name 'V1' is not a valid subset name"),
    ({"canary_steps": [50, 20, 100], "canary_mode": "progressive"}, "canary_steps must increase"),
    ({"canary_stable_weight": 80}, "give both canary_stable_weight and canary_new_weight"),
    ({"canary_measure": True, "canary_measure_url": "bookinfo/productpage"},
     "canary_measure_url 'bookinfo/productpage' is not an http(s) URL"),
    ({"canary_resilience": {"retries": {"attempts": 500}}}, "canary_resilience.retries.attempts must be an integer from 0 to 100"),
    ({"canary_measure_sigma": -1}, "canary_measure_sigma must be a positive number"),
    ({"canary_mode": "blue-green"}, "canary_mode"),
]


def case_id(case) -> str:
    return ",".join(f"{key}={json.dumps(value)[:24]}" for key, value in case[0].items())


def assert_refused_before_any_change(extra: dict, expected: str, report_path) -> None:
    """site.yml with one bad input: it fails in the preflight naming the input,
    its report names the preflight and nothing done before it, and no object
    in the cluster was created, changed or deleted."""
    before = cluster_snapshot()
    run = run_playbook(SITE, extra_vars=extra, report=report_path)
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert expected in message, message
    # The end-of-run report names the preflight as the step that failed, and nothing done before it.
    report = json.loads(report_path.read_text())
    assert report["result"] == "failed" and report["failed_step"]["step"] == "preflight", report
    assert expected in report["failed_step"]["message"] and report["failed_step"]["done_before"] == [], report
    assert [s["name"] for s in report["steps"]] == ["preflight"], report["steps"]
    # Stopped in the preflight role, before the first role's own tasks.
    failed = [name for name, _host, result in run.task_results() if result.get("failed")]
    assert failed and all(name.startswith("servicemesh.istio.") for name in failed), failed
    assert not any(name.startswith("servicemesh.istio.istio_install : Install") for name in failed), failed
    assert run.changed == 0, run.explain()
    assert changes_by_others(before) == []


def run_matrix(cases, workdir, forks: int = 10) -> dict:
    """site.yml once for all ``cases``, one inventory host a case
    (conftest.run_per_host)."""
    return run_per_host(SITE, [extra for extra, _expected in cases], workdir, forks=forks)


def assert_case_refused(matrix: dict, index: int, expected: str) -> None:
    """One case of run_matrix: its run failed in the preflight's checks
    naming the input, it changed nothing, and nothing in the cluster changed
    during the whole matrix."""
    case = matrix["hosts"][index]
    assert matrix["rc"] != 0
    assert case["stats"].get("failures", 0) + case["stats"].get("unreachable", 0) > 0, case
    message = " ".join(case["failures"])
    assert expected in message, message
    # Stopped in a role's checks (the preflight runs every role's inputs.yml), not in a change of the first role.
    failed = case["failed_tasks"]
    assert failed and all(name.startswith("servicemesh.istio.") for name in failed), failed
    assert not any(name.startswith("servicemesh.istio.istio_install : Install") for name in failed), failed
    assert case["changed"] == [] and case["stats"].get("changed", 0) == 0, case
    assert matrix["changes"] == [], matrix["changes"]


@pytest.fixture(scope="module")
def fresh_matrix(tmp_path_factory):
    """Every case, in one site.yml run on the cluster as this module finds it
    (in `make test` a fresh one: every module before it leaves an empty cluster)."""
    return run_matrix(CASES, tmp_path_factory.mktemp("matrix"))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
def test_a_bad_input_of_any_role_stops_the_run_before_any_change(fresh_matrix, index):
    assert_case_refused(fresh_matrix, index, CASES[index][1])


def test_a_refused_run_reports_the_preflight_as_its_failed_step(tmp_path):
    """One case alone, as a user runs it: rc, the end-of-run report naming the
    preflight and nothing done before it, nothing changed."""
    extra, expected = CASES[0]
    assert_refused_before_any_change(extra, expected, tmp_path / "report.json")


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
