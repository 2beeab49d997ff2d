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
processes) with a real certificate from Pebble; the loadbalancer exposure
through the same process's stand-in for the cloud's load balancer, which
reads each Service's address, ports and loadBalancerSourceRanges, relays the
allowed sources to the Service's ClusterIP and drops the others. With either
exposure the role requests each tool at its URL itself; the tests loosen the
policy or widen the ranges by hand to show the role's check failing.
Persistent storage binds its claims to PersistentVolumes the test makes (no
provisioner here).

Istio and Bookinfo are installed with site.yml first; the module leaves an
empty cluster (conftest.reset_cluster).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import time

import pytest
from kubernetes import client

from conftest import (ISTIO_VERSION, REPO_ROOT, SITE_ACME, SITE_VARS, STATE, changes_by_others, cluster_snapshot, gateway_events,
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


def http_status(address: str, port: int, path: str) -> int:
    """The test's own request at a LoadBalancer address (not the role's)."""
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def verdict_of(run) -> str:
    """The role's own verdict on what each tool answered at its exposed URL."""
    (judged,) = results_of(run, "Each tool answered at its URL as it must")
    return judged["msg"]


def exposure_vars(**extra):
    """The verify entry point's variables for an exposure (what the main entry point was given)."""
    return dict({"observability_check_timeout": 5}, **extra)


def test_gateway_exposure_serves_the_tools_over_https_behind_the_policy(converged, k8s, tmp_path):
    """observability_exposure=gateway through the gateway stand-in, which
    decides from the applied Gateway, VirtualServices, AuthorizationPolicy and
    the Certificate's Secret, and relays to the tools' processes: the role
    waits for the tools' certificate (real cert-manager, DNS-01 from Pebble)
    and its being served for each host, then requests each tool at
    https://<tool>.<domain> at the gateway's address itself: from outside the
    allowed ranges each is refused (403 from the role's DENY policy); from
    inside, Grafana sends to its login page, Kiali's API asks for a session,
    Prometheus and Jaeger answer. The other way round: a policy loosened to
    let everyone in (its notRemoteIpBlocks widened to 0.0.0.0/0) makes the
    role's check fail naming the tool, the URL and the answer; a Gateway
    selecting no gateway pod fails the role's served check."""
    assert converged.rc == 0, converged.explain()
    acme = json.loads(SITE_ACME.read_text())
    tls = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "tls")  # cert-manager and the ACME ClusterIssuer
    try:
        assert tls.rc == 0, tls.explain()
        extra = {"observability_exposure": "gateway", "observability_domain": DOMAIN,
                 "observability_cert_issuer": "smistio-acme", "observability_ca_bundle": acme["issuing_roots"],
                 "observability_allowed_source_ranges": ["192.0.2.0/24"]}
        since = time.time()
        run = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "observability", extra_vars=extra)
        assert run.rc == 0, run.explain()
        served = results_of(run, "Wait until the gateway serves the tools' certificate")[0]["results"]
        assert sorted(r["item"] for r in served) == ["grafana", "jaeger", "kiali", "prometheus"], served
        assert all("served" in r["layers_passed"] for r in served), served
        # The role's own requests: this controller (loopback) is outside 192.0.2.0/24 and has no JWT.
        verdict = verdict_of(run)
        for tool, path in (("prometheus", "/-/ready"), ("grafana", "/"), ("kiali", "/kiali/api/namespaces"),
                           ("jaeger", "/jaeger/api/services")):
            assert (f"{tool}: https://{tool}.{DOMAIN}{path} from 127.0.0.1 (outside 192.0.2.0/24) answered HTTP 403; "
                    f"expected: refused (403 from the gateway's AuthorizationPolicy).") in verdict, verdict
        decided = [e for e in gateway_events(since) if e.get("path") and e.get("status") == 403]
        assert {e["host"] for e in decided} >= {f"{t}.{DOMAIN}" for t in ("prometheus", "grafana", "kiali", "jaeger")}
        assert all("denied by AuthorizationPolicy istio-system/observability-access (DENY)" in e["why"]
                   for e in decided), decided
        (printed,) = results_of(run, "Print how to open the observability tools")
        check = printed["observability_result"]["tools"]["prometheus"]["exposure_check"]
        assert check == {"url": f"https://prometheus.{DOMAIN}/-/ready", "source": "127.0.0.1", "ok": True,
                         "answered": "HTTP 403", "expected": "refused (403 from the gateway's AuthorizationPolicy)"}

        # The other way round: the policy loosened by hand lets everyone in; the role's check says so.
        loosened = kubectl("-n", NS, "patch", "authorizationpolicy", "observability-access", "--type", "json", "-p",
                           json.dumps([{"op": "replace", "path": "/spec/rules/0/from/0/source/notRemoteIpBlocks",
                                        "value": ["0.0.0.0/0"]}]))
        assert loosened.returncode == 0, loosened.stderr
        run = run_playbook(verify_playbook(tmp_path, **exposure_vars(
            observability_exposure="gateway", observability_domain=DOMAIN,
            observability_ca_bundle=acme["issuing_roots"], observability_allowed_source_ranges=["192.0.2.0/24"])))
        assert run.rc != 0, run.explain()
        message = " ".join(run.failures())
        assert (f"prometheus at its exposed URL: https://prometheus.{DOMAIN}/-/ready (at 127.0.100.") in message, message
        assert "from 127.0.0.1, outside 192.0.2.0/24), GET /-/ready (request): HTTP 200 Prometheus Server is Ready" \
            in message, message
        assert "expected HTTP 403" in message and f"grafana at its exposed URL: https://grafana.{DOMAIN}/" in message

        inside = dict(extra, observability_allowed_source_ranges=["127.0.0.0/8"])
        run = run_playbook(SITE, "-e", f"@{SITE_VARS}", "--tags", "observability", extra_vars=inside)
        assert run.rc == 0, run.explain()
        verdict = verdict_of(run)
        where = "from 127.0.0.1 (inside 127.0.0.0/8) answered"
        assert f"grafana: https://grafana.{DOMAIN}/ {where} HTTP 302 to /login;" in verdict, verdict
        assert f"kiali: https://kiali.{DOMAIN}/kiali/api/namespaces {where} HTTP 401;" in verdict, verdict
        assert f"prometheus: https://prometheus.{DOMAIN}/-/ready {where} HTTP 200;" in verdict, verdict
        assert f"jaeger: https://jaeger.{DOMAIN}/jaeger/api/services {where} HTTP 200;" in verdict, verdict

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


def lb_record(service: str) -> list[dict]:
    """The load balancer stand-in's decisions for one Service (hack/testcluster/gateway_standin.py)."""
    path = STATE / "gateway-standin" / f"lb.{NS}.{service}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_loadbalancer_exposure_answers_only_inside_the_source_ranges(converged, k8s, tmp_path):
    """observability_exposure=loadbalancer, the tutorial's way, with
    loadBalancerSourceRanges. The cloud's load balancer is simulated by the
    gateway stand-in's process (hack/testcluster/gateway_standin.py): it reads
    each LoadBalancer Service's address, ports and loadBalancerSourceRanges and
    relays the allowed sources to the Service's ClusterIP (the real Prometheus,
    the addon stand-ins), dropping the others. The role requests each tool at
    its address: from outside the ranges no answer may come, from inside each
    answers as it must; a Service whose ranges were widened by hand makes the
    role's check fail naming the tool, the URL and the answer."""
    assert converged.rc == 0, converged.explain()
    extra = {"observability_exposure": "loadbalancer", "observability_allowed_source_ranges": ["192.0.2.0/24"]}
    run = run_playbook(SITE, "--tags", "observability", extra_vars=extra)
    assert run.rc == 0, run.explain()
    core = client.CoreV1Api(k8s)
    services = {t: core.read_namespaced_service(s, NS) for t, s in
                (("prometheus", "prometheus"), ("grafana", "grafana"), ("kiali", "kiali"), ("jaeger", "tracing"))}
    assert {s.spec.type for s in services.values()} == {"LoadBalancer"}
    assert all(s.spec.load_balancer_source_ranges == ["192.0.2.0/24"] for s in services.values())
    address = {t: s.status.load_balancer.ingress[0].ip for t, s in services.items()}
    verdict = verdict_of(run)
    for tool, port, path in (("prometheus", 9090, "/-/ready"), ("grafana", 3000, "/"),
                             ("kiali", 20001, "/kiali/api/namespaces"), ("jaeger", 80, "/jaeger/api/services")):
        assert f"{tool}: http://{address[tool]}:{port}{path} from 127.0.0.1 (outside 192.0.2.0/24) gave no answer (" \
            in verdict, verdict
    dropped = lb_record("prometheus")
    assert dropped and not dropped[-1]["allowed"] and "outside loadBalancerSourceRanges" in dropped[-1]["why"], dropped

    # The other way round: the Service's ranges widened by hand; the role's check says Prometheus answers.
    widened = kubectl("-n", NS, "patch", "service", "prometheus", "--type", "merge", "-p",
                      json.dumps({"spec": {"loadBalancerSourceRanges": ["0.0.0.0/0"]}}))
    assert widened.returncode == 0, widened.stderr
    wait("the load balancer stand-in serving the widened ranges",
         lambda: http_status(address["prometheus"], 9090, "/-/ready") == 200)
    run = run_playbook(verify_playbook(tmp_path, **exposure_vars(
        observability_addons=["prometheus"], observability_exposure="loadbalancer",
        observability_allowed_source_ranges=["192.0.2.0/24"])))
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert (f"prometheus at its exposed URL: http://{address['prometheus']}:9090/-/ready (at {address['prometheus']}:9090 "
            "from 127.0.0.1, outside 192.0.2.0/24), GET /-/ready (request): HTTP 200 Prometheus Server is Ready") \
        in message, message
    assert "expected no answer" in message and "loadBalancerSourceRanges" in message, message

    inside = dict(extra, observability_allowed_source_ranges=["127.0.0.0/8"])
    run = run_playbook(SITE, "--tags", "observability", extra_vars=inside)
    assert run.rc == 0, run.explain()
    verdict = verdict_of(run)
    where = "from 127.0.0.1 (inside 127.0.0.0/8) answered"
    assert f"grafana: http://{address['grafana']}:3000/ {where} HTTP 302 to /login;" in verdict, verdict
    assert f"kiali: http://{address['kiali']}:20001/kiali/api/namespaces {where} HTTP 401;" in verdict, verdict
    assert f"prometheus: http://{address['prometheus']}:9090/-/ready {where} HTTP 200;" in verdict, verdict
    assert f"jaeger: http://{address['jaeger']}:80/jaeger/api/services {where} HTTP 200;" in verdict, verdict
    relayed = lb_record("grafana")[-1]
    assert relayed["allowed"] and f"relayed to {services['grafana'].spec.cluster_ip}:3000" in relayed["why"], relayed


def test_persistent_storage_on_claims_bound_to_volumes(converged, k8s):
    """observability_storage: Prometheus' and Grafana's data on a
    PersistentVolumeClaim each. The test cluster has no volume provisioner,
    so the test makes two PersistentVolumes of a StorageClass of its own by
    hand (static provisioning); the real kube-controller-manager binds the
    claims to them and the real scheduler places the pods once they are
    bound. Not checked here: that data survives a pod's restart (no
    container runs, KWOK mounts nothing, and the real Prometheus the runner
    starts keeps its data in its own work directory), dynamic provisioning
    and the volume's fsGroup."""
    assert converged.rc == 0, converged.explain()
    core = client.CoreV1Api(k8s)
    for name in ("smistio-obs-a", "smistio-obs-b"):
        kubectl("delete", "pv", name, "--ignore-not-found")
        made = kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "smistio-static", "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": f"/var/lib/{name}"}}}))
        assert made.returncode == 0, made.stderr
    storage = {"observability_storage": {"prometheus": {"size": "1Gi", "storage_class": "smistio-static"},
                                         "grafana": {"size": "1Gi", "storage_class": "smistio-static"}}}
    run = run_playbook(SITE, "--tags", "observability", extra_vars=storage)
    assert run.rc == 0, run.explain()
    for addon, volume in (("prometheus", "storage-volume"), ("grafana", "storage")):
        claim = core.read_namespaced_persistent_volume_claim(f"{addon}-storage", NS)
        assert claim.status.phase == "Bound" and claim.spec.volume_name in ("smistio-obs-a", "smistio-obs-b"), claim.status
        assert claim.metadata.labels["app.kubernetes.io/managed-by"] == "servicemesh.istio.observability"
        pod = client.AppsV1Api(k8s).read_namespaced_deployment(addon, NS).spec.template.spec
        assert [v.persistent_volume_claim.claim_name for v in pod.volumes if v.name == volume] == [f"{addon}-storage"]
    # Still checked for real on its claim: istiod's target up in Prometheus.
    assert ":15014/metrics" in results_of(run, "Report Istio's scrape targets")[0]["msg"], run.explain()
    again = run_playbook(SITE, "--tags", "observability", extra_vars=storage)
    assert again.rc == 0 and again.changed == 0, again.explain()
    # Storage off again: upstream's emptyDir back, the claims (and their data) kept until a purge.
    off = run_playbook(SITE, "--tags", "observability")
    assert off.rc == 0, off.explain()
    pod = client.AppsV1Api(k8s).read_namespaced_deployment("prometheus", NS).spec.template.spec
    volume = next(v for v in pod.volumes if v.name == "storage-volume")
    assert volume.empty_dir is not None and volume.persistent_volume_claim is None, volume
    assert core.read_namespaced_persistent_volume_claim("prometheus-storage", NS).status.phase == "Bound"


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
    claims = sorted(c.metadata.name for c in core.list_namespaced_persistent_volume_claim(
        NS, label_selector="app.kubernetes.io/managed-by=servicemesh.istio.observability").items)
    assert core.read_namespaced_secret("kiali-signing-key", NS).data["value.txt"]
    again = run_playbook(TEARDOWN, "--tags", "observability")
    assert again.rc == 0 and again.changed == 0, again.explain()
    assert sorted(c.metadata.name for c in core.list_namespaced_persistent_volume_claim(NS).items
                  if c.metadata.name in claims) == claims
    # observability_teardown_purge: the credentials go too.
    purge = run_playbook(TEARDOWN, "--tags", "observability", extra_vars={"observability_teardown_purge": True})
    assert purge.rc == 0 and purge.changed > 0, purge.explain()
    assert not [s.metadata.name for s in core.list_namespaced_secret(NS).items
                if s.metadata.name in ("grafana-admin", "kiali-signing-key")]
    # The storage claims (test_persistent_storage_on_claims_bound_to_volumes) were kept, and went with the purge.
    assert not core.list_namespaced_persistent_volume_claim(
        NS, label_selector="app.kubernetes.io/managed-by=servicemesh.istio.observability").items
