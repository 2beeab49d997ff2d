"""Issue 13: role observability (Prometheus, Grafana, Kiali, Jaeger installed,
checked, and exposed safely), against the local test cluster.

Real: upstream's samples/addons manifests of the pinned Istio version, fetched
by the role from the local mirror and changed by its filter plugin; the
kube-apiserver storing them, its TokenRequest API and its service proxy,
through which every check of the role goes; Prometheus itself (the addon's
Deployment run by hack/testcluster/workload_runner.py with the addon's
ConfigMap and RBAC) with istiod's real metrics target, which the role
checks for real.

Stand-ins: Kiali, Grafana and Jaeger cannot run here (no container runtime).
The workload runner runs hack/testcluster/addon_standin.py for their
Deployments, given what the kubelet would give the container: the env with
secretKeyRef resolved from the real Secret, and the ConfigMap and Secret
volumes. It answers their APIs from that only: Kiali's strategy from its
ConfigMap (and it refuses to start with the token strategy and no signing key,
or upstream's CHANGEME one), its login by using the token against the API
server, its graph's nodes from Bookinfo's Deployments read with that token and
its edges from istio_requests_total in the real Prometheus (none: no Envoy, so
the edges are reported missing, which does not fail the run by default);
Grafana's anonymous setting from the Deployment's env over grafana.ini, its
admin password from the Secret the env points at, its dashboards from the
mounted ConfigMaps; Jaeger's query base path from its ConfigMap. So putting
upstream's anonymous Grafana or Kiali back makes the role's own checks fail
(test_upstream_anonymous_*), with nothing the test writes into the answers.
The gateway exposure goes through the gateway stand-in
(hack/testcluster/gateway_standin.py: the applied Gateway, VirtualServices,
AuthorizationPolicy and the Certificate's Secret, relaying to the tools'
processes) with a real certificate from Pebble. Not exercised here: the
loadbalancer exposure (its Services' loadBalancerSourceRanges need a cloud
load balancer to enforce them), only its refusals of unsafe inputs.

Istio and Bookinfo are installed with site.yml first; the module leaves an
empty cluster (conftest.reset_cluster).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess

import pytest
from kubernetes import client

from conftest import (ISTIO_VERSION, REPO_ROOT, SITE_ACME, SITE_VARS, changes_by_others, cluster_snapshot, gateway_events,
                      kubectl, reset_cluster, run_per_host, run_playbook, unowned_objects, assert_no_key_material)
from test_preflight_inputs import CASES, assert_case_refused, case_id, run_matrix
from conftest import until_answering as wait


SITE = REPO_ROOT / "playbooks/site.yml"
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
NS = "istio-system"
MIRROR = os.environ.get("SMI_FILE_MIRROR", "http://127.0.0.1:8879")
ADDONS = f"{MIRROR}/istio/{ISTIO_VERSION}/samples/addons"


def results_of(run, prefix):
    """Results of the tasks whose name (without the "<role> : " a role's task
    gets in site.yml) starts with ``prefix``."""
    return [r for name, _h, r in run.task_results() if name.split(" : ", 1)[-1].startswith(prefix)]


def secret_value(k8s, name: str, key: str) -> str:
    data = client.CoreV1Api(k8s).read_namespaced_secret(name, NS).data
    return base64.b64decode(data[key]).decode()


def proxy_get(k8s, service: str, path: str) -> tuple[int, bytes]:
    """The test's own look through the service proxy (not the role's)."""
    request = k8s.param_serialize("GET", f"/api/v1/namespaces/{NS}/services/{service}/proxy{path}",
                                  auth_settings=["BearerToken"])
    resp = k8s.call_api(*request, _request_timeout=10)
    return resp.status, resp.read()


def verify_playbook(tmp_path, **role_vars):
    """The role's verify entry point alone, as playbooks do."""
    path = tmp_path / "verify.yml"
    path.write_text(json.dumps([{
        "name": "Verify the observability tools", "hosts": "servicemesh_controller", "gather_facts": False,
        "module_defaults": {"group/servicemesh.istio.kubernetes": {
            "kubeconfig": "{{ servicemesh_istio_kubeconfig }}", "context": "{{ servicemesh_istio_context }}"}},
        "tasks": [{"name": "Verify", "ansible.builtin.include_role": {
            "name": "servicemesh.istio.observability", "tasks_from": "verify"}, "vars": role_vars}],
    }]))
    return path


@pytest.fixture(scope="module")
def converged(k8s):
    """One converge for every test that only reads: Istio, Bookinfo, the addons."""
    run = run_playbook(SITE, "--tags", "istio,bookinfo,observability")
    try:
        yield run
    finally:
        reset_cluster()


def test_converge_installs_checks_and_reports(converged, k8s):
    run = converged
    assert unowned_objects(run) == []  # what the run wrote itself carries the ownership label
    assert run.rc == 0, run.explain()
    # Prometheus for real: ready, and istiod's metrics target up.
    targets = results_of(run, "Report Istio's scrape targets")
    assert targets and ":15014/metrics" in targets[0]["msg"], run.explain()
    # Grafana refused the anonymous visitor and listed the Istio dashboards after the login.
    assert "HTTP 401" in results_of(run, "Grafana refuses a visitor")[0]["msg"]
    assert "Istio Mesh Dashboard" in results_of(run, "Grafana has the Istio dashboards")[0]["msg"]
    assert results_of(run, "Kiali requires the configured login")[0]["msg"] == "Kiali requires the token login."
    assert "Jaeger's query API answers" in results_of(run, "Jaeger's query API answers with")[0]["msg"]
    # What the role applied: upstream's demo settings replaced.
    kiali_conf = client.CoreV1Api(k8s).read_namespaced_config_map("kiali", NS).data["config.yaml"]
    assert "strategy: token" in kiali_conf and "CHANGEME" not in kiali_conf
    grafana = client.AppsV1Api(k8s).read_namespaced_deployment("grafana", NS).spec.template.spec.containers[0]
    env = {e.name: e for e in grafana.env}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"].value == "false" and "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD"].value_from.secret_key_ref.name == "grafana-admin"
    assert len(secret_value(k8s, "grafana-admin", "admin-password")) == 32
    assert len(secret_value(k8s, "kiali-signing-key", "value.txt")) == 32
    services = client.CoreV1Api(k8s).list_namespaced_service(
        NS, label_selector="app.kubernetes.io/managed-by=servicemesh.istio.observability").items
    assert {s.spec.type for s in services} == {"ClusterIP"}, [(s.metadata.name, s.spec.type) for s in services]


def test_the_result_fact_and_the_graph(converged):
    run = converged
    (printed,) = results_of(run, "Print how to open the observability tools")
    result = printed["observability_result"]
    tools = result["tools"]
    assert set(tools) == {"prometheus", "grafana", "kiali", "jaeger"}, tools
    assert tools["grafana"]["admin_secret"] == f"{NS}/grafana-admin"
    assert tools["kiali"]["auth"].startswith("Kubernetes token")
    assert tools["prometheus"]["port_forward"] == f"kubectl -n {NS} port-forward svc/prometheus 9090:9090"
    assert not any(t["reachable_without_login"] for t in tools.values()), tools
    # The graph Kiali gave after a token login: Bookinfo's apps and versions;
    # no traffic telemetry here, so the expected edges are reported missing.
    graph = result["graph"]
    assert graph["apps"] == {"details": ["v1"], "productpage": ["v1"], "ratings": ["v1"],
                             "reviews": ["v1", "v2", "v3"]}, graph
    assert graph["edges"] == [] and "productpage->reviews" in graph["missing_edges"], graph


def test_second_run_changes_nothing_and_prints_no_secret_at_vvv(converged, k8s):
    assert converged.rc == 0, converged.explain()
    password = secret_value(k8s, "grafana-admin", "admin-password")
    key = secret_value(k8s, "kiali-signing-key", "value.txt")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"),
               ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", str(REPO_ROOT / "inventories/local"),
                           "-vvv", "--tags", "observability", str(SITE)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    recap = output[output.rindex("PLAY RECAP"):]
    assert "changed=0" in recap and "failed=0" in recap, recap
    # Reused, not regenerated; and in no output, at -vvv included (the login ran).
    assert secret_value(k8s, "grafana-admin", "admin-password") == password
    assert secret_value(k8s, "kiali-signing-key", "value.txt") == key
    assert "Log in to Grafana and list the Istio dashboards" in output
    assert password not in output and key not in output
    assert base64.b64encode(password.encode()).decode() not in output
    assert_no_key_material(output, k8s)


def test_check_diff_changes_nothing(converged):
    assert converged.rc == 0, converged.explain()
    before = cluster_snapshot()
    run = run_playbook(SITE, "--check", "--diff", "--tags", "observability")
    assert run.rc == 0, run.explain()
    assert run.changed == 0, run.explain()
    # Controllers keep their own ConfigMaps current (leader election, istiod's
    # IP auto-allocation) while nothing is applied; everything else is unchanged.
    assert changes_by_others(before) == []


@pytest.fixture(scope="module")
def converged_matrix(converged, tmp_path_factory):
    """test_preflight_inputs.py's cases (every role), in one site.yml run on
    this module's converged cluster."""
    assert converged.rc == 0, converged.explain()
    return run_matrix(CASES, tmp_path_factory.mktemp("matrix"))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
def test_a_bad_input_of_any_role_is_refused_on_the_converged_mesh(converged_matrix, index):
    """Each refused in the preflight, naming the input; nothing changed."""
    assert_case_refused(converged_matrix, index, CASES[index][1])


BAD_INPUTS = [
    ({"observability_addons": ["prometheus", "zipkin"]}, "observability_addons names unknown addons zipkin"),
    ({"observability_exposure": "nodeport"}, "observability_exposure must be one of"),
    ({"observability_exposure": "loadbalancer"}, "observability_allowed_source_ranges is empty"),
    ({"observability_exposure": "loadbalancer", "observability_allowed_source_ranges": ["203.0.113.0/24"],
      "observability_kiali_auth_strategy": "anonymous"}, "observability_kiali_auth_strategy is anonymous"),
    ({"observability_exposure": "loadbalancer", "observability_allowed_source_ranges": ["203.0.113.7/24"]},
     "observability_allowed_source_ranges has malformed CIDRs: 203.0.113.7/24"),
    ({"observability_exposure": "gateway", "observability_allowed_source_ranges": ["203.0.113.0/24"],
      "observability_cert_issuer": "letsencrypt"}, "observability_domain is empty"),
]


@pytest.fixture(scope="module")
def refused(converged, tmp_path_factory):
    """BAD_INPUTS in one site.yml --tags istio,observability run, one
    inventory host a case (conftest.run_per_host)."""
    assert converged.rc == 0, converged.explain()
    return run_per_host(SITE, [extra for extra, _named in BAD_INPUTS], tmp_path_factory.mktemp("refused"),
                        "--tags", "istio,observability")


@pytest.mark.parametrize("index", range(len(BAD_INPUTS)), ids=[named for _extra, named in BAD_INPUTS])
def test_bad_inputs_are_refused_before_any_change(refused, index):
    """site.yml's preflight refuses them before its first change (istio's
    tasks would come first), each naming the variable."""
    case = refused["hosts"][index]
    assert refused["rc"] != 0
    message = " ".join(case["failures"])
    assert BAD_INPUTS[index][1] in message, refused["explain"]()
    assert case["changed"] == [] and case["stats"].get("changed", 0) == 0, case
    assert not [name for name in case["tasks"] if "Install or upgrade" in name], "istio_install ran before the refusal"
    assert refused["changes"] == [], refused["changes"]


def test_upstream_anonymous_grafana_fails_the_roles_check(converged, k8s, tmp_path):
    """What a role that left Grafana as shipped would leave: the role's checks refuse it."""
    assert converged.rc == 0, converged.explain()
    applied = kubectl("replace", "-f", f"{ADDONS}/grafana.yaml")
    assert applied.returncode == 0, applied.stderr
    # The stand-in restarted with upstream's env (anonymous Admin).
    wait("Grafana answering /api/search anonymously", lambda: proxy_get(k8s, "grafana:3000", "/api/search")[0] == 200)
    run = run_playbook(verify_playbook(tmp_path, observability_addons=["grafana"], observability_check_timeout=10))
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert "Grafana (service istio-system/grafana, GET /api/search) answered HTTP 200" in message, message
    assert "anonymous access is on" in message, message


def test_upstream_anonymous_kiali_fails_the_roles_check(converged, k8s, tmp_path):
    assert converged.rc == 0, converged.explain()
    applied = kubectl("replace", "-f", f"{ADDONS}/kiali.yaml")
    assert applied.returncode == 0, applied.stderr
    wait("Kiali reporting the anonymous strategy",
         lambda: b'"anonymous"' in proxy_get(k8s, "kiali:20001", "/kiali/api/auth/info")[1])
    run = run_playbook(verify_playbook(tmp_path, observability_addons=["kiali"], observability_check_timeout=10))
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert "reports the strategy 'anonymous', not 'token' (observability_kiali_auth_strategy)" in message, message


DOMAIN = "obs.smistio.test"


def https_get(address: str, host: str, path: str, ca: str) -> tuple[int, dict, bytes]:
    """GET https://<host><path> at the gateway's address (SNI and Host are
    host; the chain and name checked against the ACME server's root)."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((address, 443), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        return resp.status, dict(resp.getheaders()), resp.read()


def test_gateway_exposure_serves_the_tools_over_https_behind_the_policy(converged, k8s):
    """observability_exposure=gateway through the gateway stand-in, which
    decides from the applied Gateway, VirtualServices, AuthorizationPolicy and
    the Certificate's Secret, and relays to the tools' processes: the role
    waits for the tools' certificate (real cert-manager, DNS-01 from Pebble)
    and its being served for each host; from outside the allowed ranges every
    tool is refused (403 from the role's DENY policy); from inside, Grafana
    and Kiali still ask for their login and Prometheus answers. A Gateway
    selecting no gateway pod fails the role's served check."""
    assert converged.rc == 0, converged.explain()
    acme = json.loads(SITE_ACME.read_text())
    tls = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "tls")  # cert-manager and the ACME ClusterIssuer
    try:
        assert tls.rc == 0, tls.explain()
        extra = {"observability_exposure": "gateway", "observability_domain": DOMAIN,
                 "observability_cert_issuer": "smistio-acme", "observability_ca_bundle": acme["issuing_roots"],
                 "observability_allowed_source_ranges": ["192.0.2.0/24"]}
        run = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "observability", extra_vars=extra)
        assert run.rc == 0, run.explain()
        served = results_of(run, "Wait until the gateway serves the tools' certificate")[0]["results"]
        assert sorted(r["item"] for r in served) == ["grafana", "jaeger", "kiali", "prometheus"], served
        assert all("served" in r["layers_passed"] for r in served), served
        address = client.CoreV1Api(k8s).read_namespaced_service(
            "istio-ingressgateway", NS).status.load_balancer.ingress[0].ip
        # This client (loopback) is outside 192.0.2.0/24 and has no JWT: refused by the role's policy.
        for tool in ("prometheus", "grafana", "kiali", "jaeger"):
            status, _h, body = https_get(address, f"{tool}.{DOMAIN}", "/", acme["issuing_roots"])
            assert (status, body) == (403, b"RBAC: access denied"), (tool, status, body)
        last = gateway_events(0)[-1]
        assert "denied by AuthorizationPolicy istio-system/observability-access (DENY)" in last["why"], last

        inside = dict(extra, observability_allowed_source_ranges=["127.0.0.0/8"])
        run = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "observability", extra_vars=inside)
        assert run.rc == 0, run.explain()
        status, _h, body = https_get(address, f"grafana.{DOMAIN}", "/api/search", acme["issuing_roots"])
        assert status == 401, (status, body)  # anonymous access off, through the gateway too
        status, _h, body = https_get(address, f"kiali.{DOMAIN}", "/kiali/api/auth/info", acme["issuing_roots"])
        assert status == 200 and json.loads(body)["strategy"] == "token", body
        status, _h, body = https_get(address, f"prometheus.{DOMAIN}", "/-/ready", acme["issuing_roots"])
        assert status == 200, (status, body)  # the real Prometheus, no login of its own: the ranges are its guard

        # The other way round: a Gateway that selects no gateway pod serves nothing, and the role says so.
        wrong = dict(inside, observability_gateway_label="no-such-gateway", observability_certificate_timeout=5)
        run = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "observability", extra_vars=wrong)
        assert run.rc != 0, run.explain()
        message = " ".join(run.failures())
        assert f"grafana.{DOMAIN}" in message or f"prometheus.{DOMAIN}" in message, message
    finally:
        down = run_playbook(TEARDOWN, "-e", f"@{SITE_VARS}", "--tags", "tls",
                            extra_vars={"ingress_tls_teardown_crds": True})
        assert down.rc == 0, down.explain()


def test_teardown_keeps_the_generated_secrets(converged, k8s):
    assert converged.rc == 0, converged.explain()
    run = run_playbook(TEARDOWN, "--tags", "observability")
    assert run.rc == 0, run.explain()
    left = kubectl("get", "all,configmap,serviceaccount,clusterrole,clusterrolebinding", "-A", "-l",
                   "app.kubernetes.io/managed-by=servicemesh.istio.observability", "-o", "name")
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout + left.stderr
    # upstream's files put back by the tests above (kubectl replace) carry no label: delete them too.
    kubectl("delete", "--ignore-not-found", "-f", f"{ADDONS}/grafana.yaml", "-f", f"{ADDONS}/kiali.yaml")
    core = client.CoreV1Api(k8s)
    assert core.read_namespaced_secret("grafana-admin", NS).data["admin-password"]
    assert core.read_namespaced_secret("kiali-signing-key", NS).data["value.txt"]
    again = run_playbook(TEARDOWN, "--tags", "observability")
    assert again.rc == 0 and again.changed == 0, again.explain()
    # observability_teardown_purge: the credentials go too.
    purge = run_playbook(TEARDOWN, "--tags", "observability", extra_vars={"observability_teardown_purge": True})
    assert purge.rc == 0 and purge.changed > 0, purge.explain()
    assert not [s.metadata.name for s in core.list_namespaced_secret(NS).items
                if s.metadata.name in ("grafana-admin", "kiali-signing-key")]
