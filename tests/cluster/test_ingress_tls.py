"""Role ingress_tls through site.yml against the local test cluster.

Real: the kube-apiserver with the real Istio CRDs (base chart of the pinned
snapshot) and cert-manager's CRDs (its pinned chart, installed by the role with
Helm); istiod (pilot-discovery on the host) validating the Istio objects;
cert-manager's controller, webhook and cainjector (v1.11.5 binaries, run on
the host for the chart's Deployments by hack/testcluster/workload_runner.py):
the webhook validates every cert-manager object with the CA the cainjector
injected, the controller registers the ACME account and issues; Pebble (the
ACME server, hack/testcluster/acme_lab.py) on loopback, trusted through the
ClusterIssuer's caBundle (ingress_tls_acme_ca_bundle); knotd serving the zone
on loopback, taking the role's RFC 2136 update of the A record and
cert-manager's DNS-01 TXT record (TSIG-signed), which Pebble validates, found
by servicemesh.istio.wait_for_dns through a real delegation walk. So the
Certificate is issued end to end: account, order, challenge, TXT record,
validation, Secret; the role's HTTP check (ansible.builtin.uri) and
served-certificate check (servicemesh.istio.wait_for_certificate: TLS
handshake with SNI to the gateway's LoadBalancer IP) run against that.

Stand-in, because no container runs under KWOK: the gateway's Envoy
(hack/testcluster/gateway_standin.py, a component of the test cluster). It
answers from the real Gateway, VirtualService, Ingress, Service, pod and
Secret objects (see its docstring) and records every decision in
$SMI_STATE/gateway-standin/istio-system.istio-ingressgateway.jsonl, which these
tests read. Misconfigurations it must not hide: a VirtualService in a namespace
without Bookinfo, an older Gateway claiming the host with a wrong
credentialName, a Gateway selecting no gateway pods.

The HTTP check by name is off (ingress_tls_http_check_by_name: false): the
namespace has no system resolver; the name itself is checked against the
authoritative servers by the DNS wait.

Run inside the cluster's network namespace:
    hack/testcluster/cluster.sh exec -- .venv/bin/pytest tests/cluster/test_ingress_tls.py
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from kubernetes import client

from conftest import (REPO_ROOT, assert_istio_analyze_clean, assert_no_key_material, eventually, gateway_events, kubectl,
                      reset_cluster, run_per_host, run_playbook, unowned_objects)

sys.path.insert(0, str(REPO_ROOT / "hack" / "testcluster"))
import acme_lab  # noqa: E402 - the test cluster's helpers

SITE = REPO_ROOT / "playbooks/site.yml"
HOST = "bookinfo.smistio.test"
GW_NS, APP_NS, CM_NS = "istio-system", "default", "cert-manager"
GROUP, VERSION = "cert-manager.io", "v1"
ISSUER = "letsencrypt-custom"
CERT = "bookinfo-cert"
PARENT_NS_ADDR, ZONE_NS_ADDR, ACME_ADDR = "127.0.53.1", "127.0.53.2", "127.0.53.10"
TSIG_NAME = "smistio-update"
TSIG_SECRET = base64.b64encode(secrets.token_bytes(32)).decode()
NEVER_READY = "never-ready-cert"


def http_get(address: str, host: str, path: str) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{address}{path}", headers={"Host": host})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def dig(name: str, server: str, rtype: str = "A") -> list[str]:
    out = subprocess.run(["kdig", "+short", "+norecurse", f"@{server}", name, rtype], capture_output=True, text=True,
                         check=False, timeout=10)
    return out.stdout.split()


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------

def _delete(fn, *args):
    try:
        fn(*args)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def adopt_existing_cert_manager_crds(api) -> bool:
    """cert-manager's CRDs may exist without Helm (applied by an earlier run or
    by a user): label them for Helm's adoption (what a user does to let
    a chart take over existing CRDs). Returns whether any was there."""
    ext = client.ApiextensionsV1Api(api)
    found = False
    for crd in ext.list_custom_resource_definition().items:
        if crd.spec.group not in ("cert-manager.io", "acme.cert-manager.io"):
            continue
        found = True
        ext.patch_custom_resource_definition(crd.metadata.name, {"metadata": {
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "cert-manager", "meta.helm.sh/release-namespace": CM_NS}}})
    return found


@pytest.fixture(scope="module")
def lab(k8s, tmp_path_factory):
    """Istio + Bookinfo by site.yml, the DNS servers and Pebble; all removed afterwards."""
    work = tmp_path_factory.mktemp("ingress_tls")
    adopt_existing_cert_manager_crds(k8s)
    base = run_playbook(SITE, "--tags", "istio,bookinfo")
    assert base.rc == 0, base.explain()
    svc = client.CoreV1Api(k8s).read_namespaced_service("istio-ingressgateway", GW_NS)
    address = svc.status.load_balancer.ingress[0].ip
    procs = []
    pebble = acme_lab.Pebble(work / "pebble", ACME_ADDR, f"{ZONE_NS_ADDR}:53")
    try:
        procs.append(acme_lab.knot(work / "parent", PARENT_NS_ADDR, "test.",
                                   f"@ IN NS ns\nns IN A {PARENT_NS_ADDR}\nsmistio IN NS ns1.smistio\n"
                                   f"ns1.smistio IN A {ZONE_NS_ADDR}"))
        procs.append(acme_lab.knot(work / "zone", ZONE_NS_ADDR, "smistio.test.",
                                   f"@ IN NS ns1\nns1 IN A {ZONE_NS_ADDR}", tsig=(TSIG_NAME, TSIG_SECRET)))
        pebble.start()
        roots = work / "pebble-roots.pem"
        roots.write_bytes(pebble.issuing_roots())
        extra = {
            "ingress_tls_acme_environment": "custom",
            "ingress_tls_acme_server": pebble.directory,
            "ingress_tls_acme_ca_bundle": str(pebble.ca_file),
            "ingress_tls_acme_solver": "dns01",
            "ingress_tls_dns01_provider": "rfc2136",
            # cert-manager checks the TXT record with the zone's server: the
            # namespace has no recursive resolver.
            "ingress_tls_cert_manager_extra_values": {"dns01RecursiveNameservers": f"{ZONE_NS_ADDR}:53",
                                                      "dns01RecursiveNameserversOnly": True},
            "ingress_tls_http_check": True,
            # No system resolver in the namespace; the name is checked by the DNS wait.
            "ingress_tls_http_check_by_name": False,
            "ingress_tls_dns_wait": True,
            "ingress_tls_dns_timeout": 60,
            "ingress_tls_dns_start_servers": [{"host": PARENT_NS_ADDR, "port": 53}],
            "ingress_tls_dns_update": True,
            "ingress_tls_dns_update_server": ZONE_NS_ADDR,
            "ingress_tls_dns_tsig_key_name": TSIG_NAME,
            "ingress_tls_dns_tsig_key_secret": TSIG_SECRET,
            "ingress_tls_http_check_timeout": 30,
            "ingress_tls_issuer_timeout": 60,
            "ingress_tls_certificate_timeout": 120,
            "ingress_tls_ca_bundle": str(roots),
            "ingress_tls_min_days_remaining": 30,
        }
        yield {"address": address, "extra": extra, "pebble": pebble, "work": work, "roots": roots}
    finally:
        # The cluster is cleaned up even if a server does not stop: the next
        # test modules expect a cluster without Istio.
        try:
            pebble.stop()
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        finally:
            reset_cluster()


TAGS = ("--tags", "istio,bookinfo,ingress,tls")
# After a test that changed only what ingress_tls owns, its own tags bring the converged state back.
RESTORE = ("--tags", "ingress,tls")


def restore_vars(lab) -> dict:
    """The converged state's variables for a run that only puts it back: the
    role's checks of what it serves (DNS wait, HTTP, pushed config, served
    certificate) were proven by test_converge, and each run of a test after
    this makes them again; the Certificate is still waited for. Each check
    costs a minute of the suite's shared cores per restore."""
    return dict(lab["extra"], ingress_tls_dns_wait=False, ingress_tls_http_check=False,
                ingress_tls_pushed_config_check=False, ingress_tls_served_check=False)


def tls_snapshot(api) -> dict:
    """What a refused run must not touch: the role's objects and cert-manager's release."""
    custom = client.CustomObjectsApi(api)

    def rv(fn, *args):
        try:
            return fn(*args)["metadata"]["resourceVersion"]
        except client.ApiException as exc:
            return exc.status

    releases = json.loads(subprocess.run(["helm", "list", "-n", CM_NS, "-o", "json"], capture_output=True, text=True,
                                         check=True).stdout)
    return {
        "gateway": rv(custom.get_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "gateways",
                      "bookinfo-gateway"),
        "vs": rv(custom.get_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "virtualservices", "bookinfo"),
        "issuer": rv(custom.get_cluster_custom_object, GROUP, VERSION, "clusterissuers", ISSUER),
        "cert": rv(custom.get_namespaced_custom_object, GROUP, VERSION, GW_NS, "certificates", CERT),
        "helm": {r["name"]: r["revision"] for r in releases},
        "secrets": sorted(s.metadata.name for s in client.CoreV1Api(api).list_namespaced_secret(CM_NS).items),
    }


def leaf_of(api, name: str = CERT) -> x509.Certificate:
    secret = client.CoreV1Api(api).read_namespaced_secret(name, GW_NS)
    return x509.load_pem_x509_certificates(base64.b64decode(secret.data["tls.crt"]))[0]


def test_converge(k8s, lab):
    start, t0 = time.monotonic(), time.time()
    run = run_playbook(SITE, *TAGS, extra_vars=lab["extra"])
    assert run.rc == 0, run.explain()
    assert unowned_objects(run) == []  # what the run wrote itself carries the ownership label
    print(f"\nconverge with real issuance: {time.monotonic() - start:.0f} s, changed={run.changed}")
    custom = client.CustomObjectsApi(k8s)
    # The API server accepted every object (real CRDs, real webhooks); check what it stored.
    gw = custom.get_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", "bookinfo-gateway")
    assert gw["spec"]["selector"] == {"istio": "ingressgateway"}
    servers = {s["port"]["number"]: s for s in gw["spec"]["servers"]}
    assert servers[80]["hosts"] == [HOST] and "tls" not in servers[80]  # no httpsRedirect: it breaks HTTP-01
    assert servers[443]["tls"] == {"mode": "SIMPLE", "credentialName": CERT} and servers[443]["hosts"] == [HOST]
    vs = custom.get_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "virtualservices", "bookinfo")
    assert vs["spec"]["gateways"] == ["bookinfo-gateway"] and vs["spec"]["hosts"] == [HOST]
    routes = vs["spec"]["http"]
    assert [r["name"] for r in routes] == ["bookinfo"]  # not production: no redirect by default
    assert routes[0]["route"] == [{"destination": {"host": "productpage", "port": {"number": 9080}}}]
    # cert-manager from the pinned chart, its webhooks kept, their CA injected by the real cainjector.
    releases = json.loads(subprocess.run(["helm", "list", "-n", CM_NS, "-o", "json"], capture_output=True, text=True,
                                         check=True).stdout)
    assert [(r["name"], r["chart"], r["status"]) for r in releases] == [("cert-manager", "cert-manager-v1.21.2", "deployed")]
    adm = client.AdmissionregistrationV1Api(k8s)
    vwc = adm.read_validating_webhook_configuration("cert-manager-webhook")
    ca_secret = client.CoreV1Api(k8s).read_namespaced_secret("cert-manager-webhook-ca", CM_NS)
    assert vwc.webhooks[0].client_config.ca_bundle == ca_secret.data["ca.crt"]
    # The ACME account registered with Pebble.
    issuer = custom.get_cluster_custom_object(GROUP, VERSION, "clusterissuers", ISSUER)
    assert issuer["spec"]["acme"]["server"] == lab["pebble"].directory
    assert issuer["status"]["acme"]["uri"].startswith(f"https://{ACME_ADDR}:14000/"), issuer["status"]
    assert issuer["spec"]["acme"]["solvers"] == [{"dns01": {"rfc2136": {
        "nameserver": f"{ZONE_NS_ADDR}:53", "tsigKeyName": TSIG_NAME, "tsigAlgorithm": "HMACSHA256",
        "tsigSecretSecretRef": {"name": f"{ISSUER}-dns01", "key": "tsig-secret"}}}}]
    # The order went through ACME: a valid Order for the host, owned by the Certificate's request.
    orders = custom.list_namespaced_custom_object("acme.cert-manager.io", "v1", GW_NS, "orders")["items"]
    assert [o["status"]["state"] for o in orders] == ["valid"], orders
    assert orders[0]["spec"]["dnsNames"] == [HOST]
    assert orders[0]["status"]["url"].startswith(f"https://{ACME_ADDR}:14000/")
    # The Secret holds what Pebble issued: its intermediate, the host, chaining to Pebble's root.
    leaf = leaf_of(k8s)
    assert leaf.issuer.rfc4514_string().startswith("CN=Pebble Intermediate CA"), leaf.issuer
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [HOST]
    # Pebble validated a dns-01 challenge for real (a TXT lookup at the zone's server).
    pebble_log = lab["pebble"].logfile.read_text()
    assert "Using custom DNS resolver for ACME challenges: 127.0.53.2:53" in pebble_log
    assert "set VALID by completed challenge" in pebble_log, pebble_log[-2000:]
    # The role's RFC 2136 update reached the zone's primary; cert-manager cleaned its TXT record up.
    assert dig(HOST, ZONE_NS_ADDR) == [lab["address"]]
    eventually("cert-manager to remove its TXT record", lambda: dig(f"_acme-challenge.{HOST}", ZONE_NS_ADDR, "TXT") == [],
               30)
    # The checks ran through the gateway stand-in, which answered from the real objects.
    events = gateway_events(t0)
    http_ok = [e for e in events if e.get("port") == 80 and e.get("path") == "/productpage" and e["status"] == 200]
    assert http_ok and "VirtualService default/bookinfo" in http_ok[0]["why"], events
    assert f"{APP_NS}/productpage:9080 (productpage pods)" in http_ok[0]["why"], http_ok
    shakes = [e for e in events if e.get("sni") == HOST and e.get("handshake")]
    assert shakes and shakes[-1]["why"] == f"Secret {GW_NS}/{CERT}", events
    # The json callback names tasks "<role> : <name>".
    results = {name.split(" : ", 1)[-1]: result for name, _h, result in run.task_results()}
    served = [r for n, r in results.items() if n.startswith("Wait until the gateway serves the Secret's certificate")]
    assert served and served[0]["layers_passed"] == ["secret", "served"], served
    assert served[0]["issuer"].startswith("CN=Pebble Intermediate CA"), served[0]
    assert served[0]["fingerprint"].replace(":", "").lower() == leaf.fingerprint(hashes.SHA256()).hex()
    dns = [r for n, r in results.items() if n.startswith("Wait until the host resolves to the gateway")]
    assert dns and not dns[0].get("failed"), dns


def test_second_run_changes_nothing(k8s, lab):
    """The rerun changes nothing; it runs at -vvv (module arguments and
    results printed), and no key material appears in what it printed: not the
    TSIG key it was given (every task that handles it has no_log), not the
    certificate's or the ACME account's private key, nor any other Secret."""
    start = time.monotonic()
    run = run_playbook(SITE, *TAGS, "-vvv", extra_vars=lab["extra"])
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert '"invocation"' in run.raw  # -vvv: the modules' arguments are printed
    assert_no_key_material(run.raw + run.stderr, k8s, extra=(TSIG_SECRET,))
    print(f"\nsecond run: {time.monotonic() - start:.0f} s, changed=0")
    # What the role applied (Gateway, VirtualService, the solver's exceptions) passes Istio's own analysis.
    assert_istio_analyze_clean(GW_NS, APP_NS)


def test_check_diff_changes_nothing(k8s, lab):
    before = tls_snapshot(k8s)
    run = run_playbook(SITE, *TAGS, "--check", "--diff", extra_vars=lab["extra"])
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert tls_snapshot(k8s) == before


def test_webhook_really_validates(k8s, lab):
    """cert-manager's own validation runs: an ACME solver naming no solver
    type passes the CRD schema but not the webhook."""
    bad = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterIssuer", "metadata": {"name": "no-solver-type"},
           "spec": {"acme": {"server": lab["pebble"].directory, "privateKeySecretRef": {"name": "x"},
                             "solvers": [{}]}}}
    res = kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(bad))
    assert res.returncode != 0
    assert 'admission webhook "webhook.cert-manager.io" denied the request' in res.stderr, res.stderr


def test_redirect_spares_the_acme_challenge_path(k8s, lab):
    """With the redirect on (the production default), the Bookinfo paths on
    port 80 redirect, the challenge path does not match the redirect."""
    t0 = time.time()
    extra = dict(lab["extra"], ingress_tls_https_redirect=True)
    run = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
    assert run.rc == 0, run.explain()
    vs = client.CustomObjectsApi(k8s).get_namespaced_custom_object("networking.istio.io", "v1", APP_NS,
                                                                   "virtualservices", "bookinfo")
    redirect = vs["spec"]["http"][0]
    assert redirect["name"] == "https-redirect" and redirect["redirect"]["scheme"] == "https"
    assert all(m["port"] == 80 for m in redirect["match"])
    # The role's HTTP check saw the stand-in's 301 from that rule.
    redirected = [e for e in gateway_events(t0) if e.get("path") == "/productpage" and e["status"] == 301]
    assert redirected and "rule https-redirect" in redirected[0]["why"], gateway_events(t0)
    # The challenge path is not redirected: nothing routes it (no solver runs now).
    status, _body = http_get(lab["address"], HOST, "/.well-known/acme-challenge/token")
    assert status == 404
    again = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
    assert again.rc == 0 and again.changed == 0, again.explain()
    back = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=restore_vars(lab))
    assert back.rc == 0, back.explain()


def test_certificate_never_ready_fails_with_cert_managers_reason(k8s, lab):
    """A DNS-01 nameserver nothing listens on: cert-manager's real controller
    cannot present the TXT record, the order stays pending, the role fails
    with what cert-manager reports."""
    extra = dict(lab["extra"], ingress_tls_certificate_name=NEVER_READY, ingress_tls_certificate_timeout=20,
                 ingress_tls_issuer_name="smistio-broken-dns",
                 ingress_tls_dns01_rfc2136_nameserver=f"{ZONE_NS_ADDR}:5353")
    run = run_playbook(SITE, "--tags", "tls", extra_vars=extra)
    assert run.rc != 0
    message = " ".join(run.failures())
    assert f"Certificate {GW_NS}/{NEVER_READY} is not ready" in message, message
    assert f"kubectl -n {GW_NS} describe certificate {NEVER_READY}" in message, message
    challenges = client.CustomObjectsApi(k8s).list_namespaced_custom_object(
        "acme.cert-manager.io", "v1", GW_NS, "challenges")["items"]
    mine = [c for c in challenges if c["spec"]["issuerRef"]["name"] == "smistio-broken-dns"]
    assert mine and mine[0]["status"].get("state", "pending") == "pending", mine
    assert "5353" in mine[0]["status"].get("reason", ""), mine[0]["status"]
    custom = client.CustomObjectsApi(k8s)
    custom.delete_namespaced_custom_object(GROUP, VERSION, GW_NS, "certificates", NEVER_READY)
    _delete(custom.delete_cluster_custom_object, GROUP, VERSION, "clusterissuers", "smistio-broken-dns")
    # Back to the converged state.
    run = run_playbook(SITE, *RESTORE, extra_vars=restore_vars(lab))
    assert run.rc == 0, run.explain()


BAD_INPUTS = [
    ({"ingress_tls_acme_email": ""}, "ingress_tls_acme_email is required"),
    ({"ingress_tls_acme_email": "mesh-admin.servicemesh-istio.dev"}, "is not an e-mail address"),
    ({"ingress_tls_acme_email": "admin@example.com", "ingress_tls_acme_environment": "staging"},
     "reserved domain that Let's Encrypt refuses"),
    ({"ingress_tls_host": "Bookinfo_App..smistio.test"}, "is not a valid DNS name"),
    ({"ingress_tls_host": "https://bookinfo.smistio.test/"}, "is not a valid DNS name"),
    ({"ingress_tls_acme_environment": "prod"}, "ingress_tls_acme_environment must be one of"),
    ({"ingress_tls_acme_solver": "dns01", "ingress_tls_dns01_provider": "other",
      "ingress_tls_dns01_solver_config": {"cloudflare": {"apiTokenSecretRef": {"name": "cloudflare-api-token",
                                                                               "key": "api-token"}}}},
     "needs its credentials Secret cert-manager/cloudflare-api-token, which does not exist"),
    ({"ingress_tls_acme_solver": "dns01", "ingress_tls_dns01_provider": "rfc2136",
      "ingress_tls_dns01_rfc2136_nameserver": "127.0.53.2:53", "ingress_tls_dns01_rfc2136_tsig_key_name": TSIG_NAME,
      "ingress_tls_dns01_rfc2136_tsig_secret": ""}, "The DNS-01 RFC 2136 solver needs"),
    ({"ingress_tls_acme_ca_bundle": "/nonexistent/pebble-ca.pem"},
     "ingress_tls_acme_ca_bundle '/nonexistent/pebble-ca.pem' is not a readable file"),
]


@pytest.fixture(scope="module")
def refused(k8s, lab, tmp_path_factory):
    """Every bad input of BAD_INPUTS over the converged state's variables, in
    one site.yml --tags ingress,tls run (one inventory host a case:
    conftest.run_per_host); whether the role's objects and cert-manager's
    release stayed as they were."""
    before = tls_snapshot(k8s)
    matrix = run_per_host(SITE, [bad for bad, _expected in BAD_INPUTS], tmp_path_factory.mktemp("refused"),
                          "--tags", "ingress,tls", base=lab["extra"])
    matrix["snapshots"] = (before, tls_snapshot(k8s))
    return matrix


@pytest.mark.parametrize("index", range(len(BAD_INPUTS)), ids=[
    "email-missing", "email-malformed", "email-reserved", "host-invalid", "host-url", "environment-unknown",
    "dns01-secret-missing", "dns01-rfc2136-no-tsig", "acme-ca-bundle-missing"])
def test_bad_input_is_refused_before_any_change(refused, index):
    case = refused["hosts"][index]
    assert refused["rc"] != 0
    assert case["stats"].get("failures", 0) > 0, case
    message = " ".join(case["failures"])
    assert BAD_INPUTS[index][1] in message, message
    assert case["changed"] == [] and case["stats"].get("changed", 0) == 0, case
    before, after = refused["snapshots"]
    assert after == before


def test_webhook_check_waits_for_a_webhook_that_does_not_serve(k8s, lab):
    """Scale cert-manager's webhook Deployment to 0: the runner stops the real
    webhook, the API server cannot call it, the role's dry-run create is
    refused and the role stops before creating anything, quoting the API
    server. Scaled back, the same run passes once the webhook serves again."""
    apps = client.AppsV1Api(k8s)
    apps.patch_namespaced_deployment_scale("cert-manager-webhook", CM_NS, {"spec": {"replicas": 0}})
    try:
        eventually("the runner to stop cert-manager's webhook", lambda: kubectl(
            "create", "--dry-run=server", "-f", "-", stdin=json.dumps(
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterIssuer", "metadata": {"name": "probe"},
                 "spec": {"selfSigned": {}}})).returncode != 0, 30)
        before = tls_snapshot(k8s)
        extra = dict(lab["extra"], ingress_tls_cert_manager_wait_timeout=10)
        run = run_playbook(SITE, "--tags", "tls", extra_vars=extra)
        assert run.rc != 0
        message = " ".join(run.failures())
        assert "cert-manager's webhook did not accept a resource within 10 s" in message, message
        assert 'failed calling webhook "webhook.cert-manager.io"' in message, message
        assert tls_snapshot(k8s) == before
    finally:
        apps.patch_namespaced_deployment_scale("cert-manager-webhook", CM_NS, {"spec": {"replicas": 1}})
    run = run_playbook(SITE, "--tags", "tls", extra_vars=lab["extra"])
    assert run.rc == 0, run.explain()


@pytest.mark.parametrize("solver", [
    {"ingress_tls_acme_solver": "http01"},
    {"ingress_tls_acme_solver": "dns01", "ingress_tls_dns01_provider": "other",
     "ingress_tls_dns01_solver_config": {"cloudflare": {"apiTokenSecretRef": {"name": "cloudflare-api-token",
                                                                              "key": "api-token"}}},
     "ingress_tls_dns01_secret_name": "cloudflare-api-token",
     "ingress_tls_dns01_secret_data": {"api-token": "not-a-real-token"}},
    {"ingress_tls_acme_environment": "production"},
], ids=["http01", "dns01-secret-ref", "production"])
def test_other_issuers_are_accepted_by_the_api_server_in_check_mode(k8s, lab, solver):
    """--check sends the ClusterIssuer (and the DNS-01 Secret) as a server-side
    dry run through cert-manager's real webhook: it accepts them, nothing is
    stored, no secret is shown."""
    before = tls_snapshot(k8s)
    run = run_playbook(SITE, "--tags", "tls", "--check", "--diff", extra_vars=dict(lab["extra"], **solver))
    assert run.rc == 0, run.explain()
    env = solver.get("ingress_tls_acme_environment", "custom")
    # site.yml has the task twice (tasks_from=issue, for DNS-01, and the main part): the one that ran.
    applied = [r for n, _h, r in run.task_results()
               if n.endswith(f"Apply the ClusterIssuer ({env})") and not r.get("skipped")]
    assert applied and applied[0]["changed"], run.explain()
    spec = applied[0]["result"]["spec"]["acme"]
    if env == "production":
        assert spec["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    elif solver["ingress_tls_acme_solver"] == "http01":
        assert spec["solvers"] == [{"http01": {"ingress": {"class": "istio"}}}]
    else:
        assert spec["solvers"] == [{"dns01": solver["ingress_tls_dns01_solver_config"]}]
    assert TSIG_SECRET not in run.raw and "not-a-real-token" not in run.raw
    assert tls_snapshot(k8s) == before


def test_https_redirect_on_another_gateway_is_refused(k8s, lab):
    custom = client.CustomObjectsApi(k8s)
    other = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
             "metadata": {"name": "legacy-redirect", "namespace": APP_NS},
             "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                 {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"],
                  "tls": {"httpsRedirect": True}}]}}
    custom.create_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", other)
    try:
        # The trap concerns HTTP-01 (the lab's default solver is DNS-01, which no redirect affects).
        run = run_playbook(SITE, "--tags", "tls", extra_vars=dict(lab["extra"], ingress_tls_acme_solver="http01"))
        assert run.rc != 0
        message = " ".join(run.failures())
        assert f"{APP_NS}/legacy-redirect set tls.httpsRedirect on a port 80 server for {HOST}" in message, message
        # The stand-in honours it too: every plain-HTTP request for the host is redirected.
        status, _body = http_get(lab["address"], HOST, "/.well-known/acme-challenge/token")
        assert status == 301
    finally:
        custom.delete_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", "legacy-redirect")


def test_mesh_wide_istio_mutual_gets_a_narrow_exception_for_the_solver(k8s, lab):
    custom = client.CustomObjectsApi(k8s)
    mesh_wide = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                 "metadata": {"name": "mesh-wide-mtls", "namespace": GW_NS},
                 "spec": {"host": "*.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
    custom.create_namespaced_custom_object("networking.istio.io", "v1", GW_NS, "destinationrules", mesh_wide)
    # HTTP-01 (the traps concern its solver); the issued certificate stays valid.
    extra = dict(lab["extra"], ingress_tls_acme_solver="http01")
    try:
        run = run_playbook(SITE, "--tags", "tls", extra_vars=extra)
        assert run.rc == 0, run.explain()
        dr = custom.get_namespaced_custom_object("networking.istio.io", "v1", GW_NS, "destinationrules",
                                                 "acme-http01-solver-plaintext")
        assert dr["spec"] == {
            "host": f"*.{GW_NS}.svc.cluster.local", "exportTo": ["."],
            "workloadSelector": {"matchLabels": {"istio": "ingressgateway"}},
            "trafficPolicy": {"portLevelSettings": [{"port": {"number": 8089}, "tls": {"mode": "DISABLE"}}]}}
        again = run_playbook(SITE, "--tags", "tls", extra_vars=extra)
        assert again.rc == 0 and again.changed == 0, again.explain()
    finally:
        for name in ("mesh-wide-mtls", "acme-http01-solver-plaintext"):
            _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", GW_NS, "destinationrules", name)
        back = run_playbook(SITE, "--tags", "tls", extra_vars=restore_vars(lab))
        assert back.rc == 0, back.explain()


# ---------------------------------------------------------------------------
# Misconfigurations the gateway stand-in must not hide
# ---------------------------------------------------------------------------

def test_virtualservice_in_a_namespace_without_bookinfo_fails_the_http_check(k8s, lab):
    """The Gateway and VirtualService put in a namespace where no productpage
    runs: the route's short destination host means productpage there, the
    gateway answers 503, the role's HTTP check fails."""
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bookinfo-elsewhere")))
    custom = client.CustomObjectsApi(k8s)
    # Only the misplaced pair binds the host (an older VirtualService for it would win).
    for kind, name in (("virtualservices", "bookinfo"), ("gateways", "bookinfo-gateway")):
        custom.delete_namespaced_custom_object("networking.istio.io", "v1", APP_NS, kind, name)
    t0 = time.time()
    try:
        extra = dict(lab["extra"], ingress_tls_namespace="bookinfo-elsewhere", ingress_tls_http_check_timeout=5,
                     ingress_tls_gateway_name="bookinfo-gateway-elsewhere")
        run = run_playbook(SITE, "--tags", "ingress", extra_vars=extra)
        assert run.rc != 0
        message = " ".join(run.failures())
        assert "did not return the Bookinfo page" in message and "status 503" in message, message
        decided = [e for e in gateway_events(t0) if e.get("path") == "/productpage"]
        assert decided and "no Service bookinfo-elsewhere/productpage" in decided[-1]["why"], decided
    finally:
        for kind, name in (("virtualservices", "bookinfo"), ("gateways", "bookinfo-gateway-elsewhere")):
            _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", "bookinfo-elsewhere", kind, name)
        _delete(core.delete_namespace, "bookinfo-elsewhere")
    # The right configuration passes again.
    back = run_playbook(SITE, *RESTORE, extra_vars=lab["extra"])
    assert back.rc == 0, back.explain()
    status, body = http_get(lab["address"], HOST, "/productpage")
    assert status == 200 and "Simple Bookstore App" in body


def test_older_gateway_with_a_wrong_credential_fails_the_served_check(k8s, lab):
    """Another (older) Gateway already claims the host on 443 with a
    credentialName that names another Secret: Envoy serves the first server
    for a host and port, so the gateway does not serve the role's certificate,
    and the role's checks fail: first the pushed-config check (istiod pushes
    the older server's secret for the host), and with that check off, the
    served-certificate check against the gateway stand-in."""
    custom = client.CustomObjectsApi(k8s)
    core = client.CoreV1Api(k8s)
    custom.delete_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", "bookinfo-gateway")
    legacy = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
              "metadata": {"name": "legacy-tls", "namespace": APP_NS},
              "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                  {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
                   "tls": {"mode": "SIMPLE", "credentialName": "legacy-tls-cert"}}]}}
    custom.create_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", legacy)
    time.sleep(1.1)  # creationTimestamp has a resolution of one second
    t0 = time.time()
    try:
        extra = dict(lab["extra"], ingress_tls_certificate_timeout=10, ingress_tls_pushed_config_timeout=10)
        run = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
        assert run.rc != 0
        message = " ".join(run.failures())
        assert f"expected kubernetes://{CERT}" in message, message
        extra["ingress_tls_pushed_config_check"] = False
        run = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
        assert run.rc != 0
        message = " ".join(run.failures())
        assert f"serves credentialName {CERT}, which istiod reads from {GW_NS}" in message, message
        shakes = [e for e in gateway_events(t0) if e.get("sni") == HOST]
        assert shakes and not shakes[-1]["handshake"], shakes
        assert "credentialName 'legacy-tls-cert'" in shakes[-1]["why"], shakes
    finally:
        _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "gateways", "legacy-tls")
        _delete(core.delete_namespaced_secret, "legacy-tls-cert", GW_NS)
    back = run_playbook(SITE, *RESTORE, extra_vars=restore_vars(lab))
    assert back.rc == 0, back.explain()


def test_gateway_selecting_no_gateway_pods_serves_nothing(k8s, lab):
    """A Gateway (and its VirtualService) whose selector matches no gateway
    pod is not served by this gateway: 404, and no certificate for its host."""
    custom = client.CustomObjectsApi(k8s)
    host = "elsewhere.smistio.test"
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
          "metadata": {"name": "wrong-selector", "namespace": APP_NS},
          "spec": {"selector": {"istio": "egressgateway"}, "servers": [
              {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [host]},
              {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [host],
               "tls": {"mode": "SIMPLE", "credentialName": CERT}}]}}
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "wrong-selector", "namespace": APP_NS},
          "spec": {"hosts": [host], "gateways": ["wrong-selector"],
                   "http": [{"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}}
    custom.create_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", gw)
    custom.create_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "virtualservices", vs)
    try:
        status, _body = http_get(lab["address"], host, "/productpage")
        assert status == 404
        gw["spec"]["selector"] = {"istio": "ingressgateway"}
        gw["metadata"]["resourceVersion"] = custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", APP_NS, "gateways", "wrong-selector")["metadata"]["resourceVersion"]
        custom.replace_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", "wrong-selector", gw)
        status, body = http_get(lab["address"], host, "/productpage")
        assert status == 200 and "Simple Bookstore App" in body
    finally:
        _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "virtualservices",
                "wrong-selector")
        _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "gateways",
                "wrong-selector")


def test_http01_issuance_through_the_gateway_stand_in(k8s, lab):
    """HTTP-01 for real up to the data plane: cert-manager creates the solver's
    Ingress (class istio), Service and acmesolver pod; Pebble asks
    http://<host>/.well-known/acme-challenge/<token> at the gateway's address
    (the A record the role wrote), where the stand-in routes it through that
    Ingress to the solver pod and answers what acmesolver would (its --key for
    its --token). cert-manager's own self-check goes the same way
    (--acme-http01-solver-nameservers: the zone's server, no system resolver here)."""
    name, issuer = "bookinfo-http01", "smistio-http01"
    values = dict(lab["extra"]["ingress_tls_cert_manager_extra_values"],
                  extraArgs=[f"--acme-http01-solver-nameservers={ZONE_NS_ADDR}:53"])
    extra = dict(lab["extra"], ingress_tls_acme_solver="http01", ingress_tls_issuer_name=issuer,
                 ingress_tls_certificate_name=name, ingress_tls_cert_manager_extra_values=values)
    t0 = time.time()
    custom = client.CustomObjectsApi(k8s)
    try:
        run = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
        assert run.rc == 0, run.explain()
        leaf = leaf_of(k8s, name)
        assert leaf.issuer.rfc4514_string().startswith("CN=Pebble Intermediate CA"), leaf.issuer
        answered = [e for e in gateway_events(t0)
                    if e.get("path", "").startswith("/.well-known/acme-challenge/") and e["status"] == 200]
        assert answered and f"acmesolver for {HOST}" in answered[0]["why"], gateway_events(t0)
        assert answered[0]["why"].startswith(f"Ingress -> {GW_NS}/cm-acme-http-solver-"), answered[0]
    finally:
        _delete(custom.delete_namespaced_custom_object, GROUP, VERSION, GW_NS, "certificates", name)
        _delete(client.CoreV1Api(k8s).delete_namespaced_secret, name, GW_NS)
        _delete(custom.delete_cluster_custom_object, GROUP, VERSION, "clusterissuers", issuer)
    back = run_playbook(SITE, *RESTORE, extra_vars=restore_vars(lab))
    assert back.rc == 0, back.explain()
