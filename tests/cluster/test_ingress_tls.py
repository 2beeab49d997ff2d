"""Role ingress_tls through site.yml against the local test cluster.

Real: the kube-apiserver with the real Istio CRDs (base chart of the pinned
snapshot) and cert-manager's CRDs (its pinned chart, installed by the role with
Helm); istiod (pilot-discovery on the host) validating the Istio objects;
knotd serving the zone on loopback and taking the role's RFC 2136 update
(TSIG-signed), found by servicemesh.istio.wait_for_dns through a real
delegation walk; the role's HTTP check (ansible.builtin.uri) and its
served-certificate check (servicemesh.istio.wait_for_certificate: TLS handshake
with SNI to the gateway's LoadBalancer IP).

Simulated, because no container runs under KWOK (see docs/testing-cert-manager.md):
- cert-manager's controller: ``FakeCertManager`` marks ClusterIssuers Ready
  and issues Certificates (a Secret signed by a test CA that looks like Let's
  Encrypt staging, then status Ready with notAfter, on the status subresource),
  or leaves one failing with cert-manager's own reason and message;
- cert-manager's admission webhooks: removed after install by the local
  inventory (ingress_tls_cert_manager_admission_webhooks: false); one test
  puts the chart's ValidatingWebhookConfiguration back and shows the role's
  dry-run check refuses to go on while the webhook does not serve;
- the gateway's Envoy: ``GatewayStandIn`` listens on the gateway Service's
  LoadBalancer IP (127.0.100.x, local in the namespace), ports 80 and 443, and
  answers from the real Gateway and VirtualService objects: the HTTP routes of
  the VirtualService bound to a port 80 server for the Host (200 with
  Bookinfo's title, or the redirect), and on 443 the certificate of the
  credentialName Secret read from the gateway's namespace, for the SNI of an
  HTTPS server's host.
- The HTTP check by name is off (ingress_tls_http_check_by_name: false): the
  namespace has no system resolver; the name itself is checked against the
  authoritative servers by the DNS wait.

Run inside the cluster's network namespace:
    hack/testcluster/cluster.sh exec -- .venv/bin/pytest tests/cluster/test_ingress_tls.py
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from conftest import REPO_ROOT, kubectl, run_playbook

SITE = REPO_ROOT / "playbooks/site.yml"
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
HOST = "bookinfo.smistio.test"
GW_NS, APP_NS, CM_NS = "istio-system", "default", "cert-manager"
GROUP, VERSION = "cert-manager.io", "v1"
ISSUER = "letsencrypt-staging"
CERT = "bookinfo-cert"
PARENT_NS_ADDR, ZONE_NS_ADDR = "127.0.53.1", "127.0.53.2"
TSIG_NAME = "smistio-update"
TSIG_SECRET = base64.b64encode(secrets.token_bytes(32)).decode()
NEVER_READY = "never-ready-cert"
CM_CRDS = ("certificates", "certificaterequests", "issuers", "clusterissuers")
CM_ACME_CRDS = ("orders", "challenges")
BOOKINFO_HTML = (b"<!DOCTYPE html><html><head><title>Simple Bookstore App</title></head>"
                 b"<body>stand-in productpage</body></html>")


def wait(what, predicate, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------------------
# A test CA that looks like Let's Encrypt staging
# ---------------------------------------------------------------------------

class StagingLikeCA:
    """Root "(STAGING) Pretend Pear X1" and intermediate "(STAGING) Ersatz
    Edamame E1" of organisation "(STAGING) Let's Encrypt", like staging's."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                               x509.NameAttribute(NameOID.ORGANIZATION_NAME, "(STAGING) Internet Security Research Group"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "(STAGING) Pretend Pear X1")])
        self.root = self._sign(root_name, root_name, self.root_key.public_key(), self.root_key, now, 3650, ca=True)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.int_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "(STAGING) Let's Encrypt"),
                                   x509.NameAttribute(NameOID.COMMON_NAME, "(STAGING) Ersatz Edamame E1")])
        self.intermediate = self._sign(self.int_name, root_name, self.int_key.public_key(), self.root_key, now, 1000, ca=True)

    @staticmethod
    def _sign(subject, issuer, public_key, key, now, days, ca=False, sans=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                            critical=False)
        return builder.sign(key, hashes.SHA256())

    def issue(self, dns_names, days=90):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        leaf = self._sign(x509.Name([]), self.int_name, key.public_key(), self.int_key, now, days, sans=dns_names)
        chain = (leaf.public_bytes(serialization.Encoding.PEM)
                 + self.intermediate.public_bytes(serialization.Encoding.PEM))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return leaf, chain, key_pem

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------
# cert-manager's controller, played by the test
# ---------------------------------------------------------------------------

class FakeCertManager(threading.Thread):
    """Plays cert-manager's controller on the real API objects."""

    def __init__(self, api, ca):
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.ca = ca
        self.stop_event = threading.Event()
        self.issued: dict[str, str] = {}  # namespace/name -> leaf fingerprint
        self.errors: list[str] = []

    @staticmethod
    def _now():
        return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _ready(self, obj):
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   and c.get("observedGeneration", obj["metadata"]["generation"]) == obj["metadata"]["generation"]
                   for c in obj.get("status", {}).get("conditions", []))

    def run(self):
        while not self.stop_event.wait(0.5):
            try:
                self._issuers()
                self._certificates()
            except client.ApiException as exc:
                if exc.status not in (404, 409):
                    self.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))

    def _issuers(self):
        for issuer in self.custom.list_cluster_custom_object(GROUP, VERSION, "clusterissuers")["items"]:
            if self._ready(issuer):
                continue
            issuer["status"] = {
                "acme": {"uri": "https://acme.invalid/acme/acct/1",
                         "lastRegisteredEmail": issuer["spec"].get("acme", {}).get("email", "")},
                "conditions": [{"type": "Ready", "status": "True", "reason": "ACMEAccountRegistered",
                                "message": "The ACME account was registered with the ACME server",
                                "lastTransitionTime": self._now(),
                                "observedGeneration": issuer["metadata"]["generation"]}]}
            self.custom.replace_cluster_custom_object_status(GROUP, VERSION, "clusterissuers",
                                                             issuer["metadata"]["name"], issuer)

    def _failed_request(self, cert):
        """The CertificateRequest cert-manager leaves after a failed ACME order."""
        meta = cert["metadata"]
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in cert["spec"]["dnsNames"]]),
                              critical=False)
               .sign(key, hashes.SHA256()))
        name = f"{meta['name']}-1"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CertificateRequest",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "annotations": {"cert-manager.io/certificate-name": meta["name"],
                                         "cert-manager.io/certificate-revision": "1"},
                         "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "Certificate",
                                              "name": meta["name"], "uid": meta["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                     "issuerRef": cert["spec"]["issuerRef"]},
        }
        created = self.custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], "certificaterequests",
                                                              body)
        created["status"] = {"failureTime": self._now(), "conditions": [
            {"type": "Approved", "status": "True", "reason": "cert-manager.io",
             "message": "Certificate request has been approved by cert-manager.io", "lastTransitionTime": self._now()},
            {"type": "Ready", "status": "False", "reason": "Failed",
             "message": (f'Failed to wait for order resource "{name}-4242" to become ready: order is in "invalid" '
                         'state: 403 urn:ietf:params:acme:error:unauthorized'),
             "lastTransitionTime": self._now()}]}
        self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], "certificaterequests",
                                                            name, created)

    def _certificates(self):
        for cert in self.custom.list_cluster_custom_object(GROUP, VERSION, "certificates")["items"]:
            meta = cert["metadata"]
            if self._ready(cert):
                continue
            if meta["name"] == NEVER_READY:
                conditions = cert.get("status", {}).get("conditions", [])
                if any(c.get("reason") == "Failed" for c in conditions):
                    continue
                cert["status"] = {"failedIssuanceAttempts": 1, "lastFailureTime": self._now(), "conditions": [
                    {"type": "Ready", "status": "False", "reason": "DoesNotExist",
                     "message": "Issuing certificate as Secret does not exist", "lastTransitionTime": self._now(),
                     "observedGeneration": meta["generation"]},
                    {"type": "Issuing", "status": "False", "reason": "Failed",
                     "message": ('The certificate request has failed to complete and will be retried: Failed to wait '
                                 f'for order resource "{meta["name"]}-1-4242" to become ready: order is in "invalid" '
                                 'state: 403 urn:ietf:params:acme:error:unauthorized: Invalid response from '
                                 f'http://{HOST}/.well-known/acme-challenge/x: 404'),
                     "lastTransitionTime": self._now(), "observedGeneration": meta["generation"]}]}
                cert = self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"],
                                                                           "certificates", meta["name"], cert)
                self._failed_request(cert)
                continue
            leaf, chain, key_pem = self.ca.issue(cert["spec"]["dnsNames"])
            secret = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=cert["spec"]["secretName"],
                    annotations={"cert-manager.io/certificate-name": meta["name"],
                                 "cert-manager.io/issuer-name": cert["spec"]["issuerRef"]["name"],
                                 "cert-manager.io/issuer-kind": "ClusterIssuer"}),
                type="kubernetes.io/tls",
                data={"tls.crt": base64.b64encode(chain).decode(), "tls.key": base64.b64encode(key_pem).decode(),
                      "ca.crt": ""})
            try:
                self.core.create_namespaced_secret(meta["namespace"], secret)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                self.core.replace_namespaced_secret(secret.metadata.name, meta["namespace"], secret)
            cert["status"] = {
                "notBefore": leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "notAfter": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "renewalTime": (leaf.not_valid_after_utc - datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "revision": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                "message": "Certificate is up to date and has not expired",
                                "lastTransitionTime": self._now(), "observedGeneration": meta["generation"]}]}
            self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], "certificates",
                                                                meta["name"], cert)
            self.issued[f"{meta['namespace']}/{meta['name']}"] = leaf.fingerprint(hashes.SHA256()).hex()


# ---------------------------------------------------------------------------
# The gateway's Envoy, played from the real Gateway/VirtualService objects
# ---------------------------------------------------------------------------

class GatewayStandIn:
    """Ports 80 and 443 on the gateway's LoadBalancer IP, answering from the
    cluster's Gateway, VirtualService and Secret objects."""

    def __init__(self, api, address, label, workdir):
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.address, self.label, self.workdir = address, label, Path(workdir)
        self.requests: list[tuple[str, str, int]] = []
        self.handshakes: list[str] = []
        self.threads = []
        self.http = None
        self.tls_sock = None
        self.stopping = threading.Event()

    # -- configuration as istiod would compute it (the subset Bookinfo needs)
    def _gateways(self):
        items = self.custom.list_cluster_custom_object("networking.istio.io", "v1", "gateways")["items"]
        return [g for g in items if g["spec"].get("selector", {}).get("istio") == self.label]

    def _route(self, host, path, port):
        bound = [f"{g['metadata']['namespace']}/{g['metadata']['name']}" for g in self._gateways()
                 if any(s["port"]["number"] == port and host in s.get("hosts", []) for s in g["spec"]["servers"])]
        for vs in self.custom.list_cluster_custom_object("networking.istio.io", "v1", "virtualservices")["items"]:
            ns = vs["metadata"]["namespace"]
            gws = [g if "/" in g else f"{ns}/{g}" for g in vs["spec"].get("gateways", [])]
            if host not in vs["spec"].get("hosts", []) or not set(gws) & set(bound):
                continue
            for rule in vs["spec"].get("http", []):
                for match in rule.get("match", [{}]):
                    if "port" in match and match["port"] != port:
                        continue
                    uri = match.get("uri", {})
                    if ("exact" in uri and path != uri["exact"]) or ("prefix" in uri and not path.startswith(uri["prefix"])):
                        continue
                    return rule
        return None

    def _credential(self, sni):
        for gw in self._gateways():
            for server in gw["spec"]["servers"]:
                tls = server.get("tls", {})
                if server["port"]["number"] == 443 and sni in server.get("hosts", []) and tls.get("credentialName"):
                    try:
                        # istiod reads credentialName from the gateway Deployment's namespace.
                        secret = self.core.read_namespaced_secret(tls["credentialName"], GW_NS)
                    except client.ApiException:
                        return None
                    return (base64.b64decode(secret.data["tls.crt"]), base64.b64decode(secret.data["tls.key"]))
        return None

    # -- port 80
    def start(self):
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                host = (self.headers.get("Host") or "").split(":")[0]
                rule = stand_in._route(host, self.path, 80)
                if rule is None:
                    status, body, headers = 404, b"", {}
                elif "redirect" in rule:
                    status, body, headers = 301, b"", {"Location": f"https://{host}{self.path}"}
                else:
                    status, body, headers = 200, BOOKINFO_HTML, {"Content-Type": "text/html"}
                stand_in.requests.append((host, self.path, status))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer((self.address, 80), Handler)
        self.threads.append(threading.Thread(target=self.http.serve_forever, daemon=True))
        # -- port 443
        self.tls_sock = socket.create_server((self.address, 443))
        self.tls_sock.settimeout(0.5)
        self.threads.append(threading.Thread(target=self._serve_tls, daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def _context_for(self, sni):
        cred = self._credential(sni)
        if cred is None:
            return None
        crt, key = self.workdir / f"{sni}.crt", self.workdir / f"{sni}.key"
        crt.write_bytes(cred[0])
        key.write_bytes(cred[1])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        return ctx

    def _serve_tls(self):
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        def pick(sslobj, server_name, _ctx):
            self.handshakes.append(server_name or "")
            ctx = self._context_for(server_name) if server_name else None
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sslobj.context = ctx
            return None

        base.sni_callback = pick
        while not self.stopping.is_set():
            try:
                conn, _peer = self.tls_sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            try:
                with base.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def stop(self):
        self.stopping.set()
        if self.http:
            self.http.shutdown()
            self.http.server_close()
        if self.tls_sock:
            self.tls_sock.close()


# ---------------------------------------------------------------------------
# DNS: test. delegates smistio.test. to a knotd that takes RFC 2136 updates
# ---------------------------------------------------------------------------

def knot(workdir: Path, address: str, zone: str, records: str, update_key: bool) -> subprocess.Popen:
    for sub in ("run", "db", "zones"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    conf = [
        "server:", f'    rundir: "{workdir / "run"}"', f"    listen: {address}@53",
        "    udp-workers: 1", "    tcp-workers: 1", "    background-workers: 1",
        "database:", f'    storage: "{workdir / "db"}"',
        "log:", "  - target: stderr", "    any: info",
    ]
    if update_key:
        conf += ["key:", f"  - id: {TSIG_NAME}", "    algorithm: hmac-sha256", f"    secret: {TSIG_SECRET}",
                 "acl:", "  - id: update", f"    key: {TSIG_NAME}", "    action: update"]
    conf += ["template:", "  - id: default", f'    storage: "{workdir / "zones"}"', "    semantic-checks: off",
             "    zonefile-sync: -1", "    journal-content: changes",
             "zone:", f'  - domain: "{zone}"', '    file: "zone.db"']
    if update_key:
        conf.append("    acl: update")
    (workdir / "knot.conf").write_text("\n".join(conf) + "\n")
    (workdir / "zones" / "zone.db").write_text(
        f"$TTL 60\n@ IN SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 60\n{records}\n")
    log = open(workdir / "knotd.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([shutil.which("knotd") or "/usr/sbin/knotd", "-c", str(workdir / "knot.conf")],
                            stdout=log, stderr=subprocess.STDOUT)

    def up():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.3)
            return sock.connect_ex((address, 53)) == 0

    wait(f"knotd on {address}:53", up, 10, 0.2)
    return proc


def dig(name: str, server: str) -> list[str]:
    out = subprocess.run(["kdig", "+short", "+norecurse", f"@{server}", name, "A"], capture_output=True, text=True,
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


def cleanup_tls(api, crds_were_there: bool) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    names = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    if "certificates.cert-manager.io" in names:
        for cert in custom.list_cluster_custom_object(GROUP, VERSION, "certificates")["items"]:
            _delete(custom.delete_namespaced_custom_object, GROUP, VERSION, cert["metadata"]["namespace"],
                    "certificates", cert["metadata"]["name"])
        for issuer in custom.list_cluster_custom_object(GROUP, VERSION, "clusterissuers")["items"]:
            _delete(custom.delete_cluster_custom_object, GROUP, VERSION, "clusterissuers", issuer["metadata"]["name"])
    for name in (CERT, NEVER_READY):
        _delete(core.delete_namespaced_secret, name, GW_NS)
    if "gateways.networking.istio.io" in names:
        _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "gateways",
                "bookinfo-gateway")
        _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", APP_NS, "virtualservices",
                "bookinfo")
    subprocess.run(["helm", "uninstall", "cert-manager", "-n", CM_NS, "--wait", "--timeout", "2m"],
                   capture_output=True, check=False)
    adm = client.AdmissionregistrationV1Api(api)
    _delete(adm.delete_validating_webhook_configuration, "cert-manager-webhook")
    _delete(adm.delete_mutating_webhook_configuration, "cert-manager-webhook")
    if not crds_were_there:
        for crd in ext.list_custom_resource_definition().items:
            if crd.spec.group in ("cert-manager.io", "acme.cert-manager.io"):
                _delete(ext.delete_custom_resource_definition, crd.metadata.name)
    _delete(core.delete_namespace, CM_NS)


def adopt_existing_cert_manager_crds(api) -> bool:
    """The session fixture cert_manager_crds may have applied cert-manager's
    CRDs without Helm: label them for Helm's adoption (what a user does to let
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
    """Istio + Bookinfo by site.yml, the DNS servers, the stand-ins; all removed afterwards."""
    work = tmp_path_factory.mktemp("ingress_tls")
    crds_were_there = adopt_existing_cert_manager_crds(k8s)
    base = run_playbook(SITE, "--tags", "istio,bookinfo")
    assert base.rc == 0, base.explain()
    svc = client.CoreV1Api(k8s).read_namespaced_service("istio-ingressgateway", GW_NS)
    address = svc.status.load_balancer.ingress[0].ip
    label = svc.spec.selector["istio"]
    procs = []
    ca = StagingLikeCA()
    (work / "ca.pem").write_bytes(ca.root_pem())
    fake = FakeCertManager(k8s, ca)
    gateway = GatewayStandIn(k8s, address, label, work)
    try:
        procs.append(knot(work / "parent", PARENT_NS_ADDR, "test.",
                          f"@ IN NS ns\nns IN A {PARENT_NS_ADDR}\nsmistio IN NS ns1.smistio\n"
                          f"ns1.smistio IN A {ZONE_NS_ADDR}", update_key=False))
        procs.append(knot(work / "zone", ZONE_NS_ADDR, "smistio.test.",
                          f"@ IN NS ns1\nns1 IN A {ZONE_NS_ADDR}", update_key=True))
        fake.start()
        gateway.start()
        extra = {
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
            "ingress_tls_issuer_timeout": 30,
            "ingress_tls_certificate_timeout": 60,
            "ingress_tls_ca_bundle": str(work / "ca.pem"),
            "ingress_tls_min_days_remaining": 30,
        }
        yield {"address": address, "extra": extra, "fake": fake, "gateway": gateway, "ca": ca, "work": work}
    finally:
        fake.stop_event.set()
        gateway.stop()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        cleanup_tls(k8s, crds_were_there)
        down = run_playbook(TEARDOWN, extra_vars={"istio_install_teardown_crds": True})
        assert down.rc == 0, down.explain()


TAGS = ("--tags", "istio,bookinfo,ingress,tls")


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


def test_converge(k8s, lab):
    start = time.monotonic()
    run = run_playbook(SITE, *TAGS, extra_vars=lab["extra"])
    assert run.rc == 0, run.explain()
    assert not lab["fake"].errors, lab["fake"].errors
    print(f"\nconverge: {time.monotonic() - start:.0f} s, changed={run.changed}: {run.changed_tasks()}")
    custom = client.CustomObjectsApi(k8s)
    # The API server accepted every object (real CRDs); check what it stored.
    gw = custom.get_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", "bookinfo-gateway")
    assert gw["spec"]["selector"] == {"istio": "ingressgateway"}
    servers = {s["port"]["number"]: s for s in gw["spec"]["servers"]}
    assert servers[80]["hosts"] == [HOST] and "tls" not in servers[80]  # no httpsRedirect: it breaks HTTP-01
    assert servers[443]["tls"] == {"mode": "SIMPLE", "credentialName": CERT} and servers[443]["hosts"] == [HOST]
    vs = custom.get_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "virtualservices", "bookinfo")
    assert vs["spec"]["gateways"] == ["bookinfo-gateway"] and vs["spec"]["hosts"] == [HOST]
    routes = vs["spec"]["http"]
    assert [r["name"] for r in routes] == ["bookinfo"]  # staging: no redirect by default
    assert routes[0]["match"] == [{"uri": {"exact": "/productpage"}}, {"uri": {"prefix": "/static"}},
                                  {"uri": {"exact": "/login"}}, {"uri": {"exact": "/logout"}},
                                  {"uri": {"prefix": "/api/v1/products"}}]
    assert routes[0]["route"] == [{"destination": {"host": "productpage", "port": {"number": 9080}}}]
    issuer = custom.get_cluster_custom_object(GROUP, VERSION, "clusterissuers", ISSUER)
    assert issuer["spec"]["acme"]["server"] == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert issuer["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {"class": "istio"}}}]
    cert = custom.get_namespaced_custom_object(GROUP, VERSION, GW_NS, "certificates", CERT)
    assert cert["spec"]["dnsNames"] == [HOST] and cert["spec"]["secretName"] == CERT
    assert cert["spec"]["issuerRef"] == {"name": ISSUER, "kind": "ClusterIssuer", "group": GROUP}
    # cert-manager from the pinned chart, with its CRDs, its webhooks removed (test inventory).
    releases = json.loads(subprocess.run(["helm", "list", "-n", CM_NS, "-o", "json"], capture_output=True, text=True,
                                         check=True).stdout)
    assert [(r["name"], r["chart"], r["status"]) for r in releases] == [("cert-manager", "cert-manager-v1.21.2", "deployed")]
    # The role's RFC 2136 update reached the zone's primary.
    assert dig(HOST, ZONE_NS_ADDR) == [lab["address"]]
    # The checks really ran: HTTP through the gateway IP, TLS handshake with SNI.
    assert (HOST, "/productpage", 200) in lab["gateway"].requests
    assert HOST in lab["gateway"].handshakes
    # The json callback names tasks "<role> : <name>".
    results = {name.split(" : ", 1)[-1]: result for name, _h, result in run.task_results()}
    served = [r for n, r in results.items() if n.startswith("Wait until the gateway serves the Secret's certificate")]
    assert served and served[0]["layers_passed"] == ["secret", "served"], served
    assert served[0]["issuer"].startswith("CN=(STAGING) Ersatz Edamame E1,O=(STAGING) Let's Encrypt")
    assert served[0]["fingerprint"].replace(":", "").lower() == lab["fake"].issued[f"{GW_NS}/{CERT}"]
    dns = [r for n, r in results.items() if n.startswith("Wait until the host resolves to the gateway")]
    assert dns and not dns[0].get("failed"), dns


def test_second_run_changes_nothing(lab):
    start = time.monotonic()
    run = run_playbook(SITE, *TAGS, extra_vars=lab["extra"])
    assert run.rc == 0 and run.changed == 0, run.explain()
    print(f"\nsecond run: {time.monotonic() - start:.0f} s, changed=0")


def test_check_diff_changes_nothing(k8s, lab):
    before = tls_snapshot(k8s)
    run = run_playbook(SITE, *TAGS, "--check", "--diff", extra_vars=lab["extra"])
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert tls_snapshot(k8s) == before


def test_redirect_spares_the_acme_challenge_path(k8s, lab):
    """With the redirect on (the production default), the Bookinfo paths on
    port 80 redirect, the challenge path does not match the redirect."""
    extra = dict(lab["extra"], ingress_tls_https_redirect=True)
    run = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
    assert run.rc == 0, run.explain()
    vs = client.CustomObjectsApi(k8s).get_namespaced_custom_object("networking.istio.io", "v1", APP_NS,
                                                                   "virtualservices", "bookinfo")
    redirect = vs["spec"]["http"][0]
    assert redirect["name"] == "https-redirect" and redirect["redirect"]["scheme"] == "https"
    assert all(m["port"] == 80 for m in redirect["match"])
    assert not [m for m in redirect["match"] if "/.well-known/acme-challenge/x".startswith(m["uri"].get("prefix", "\0"))]
    rule = lab["gateway"]._route(HOST, "/.well-known/acme-challenge/token", 80)
    assert rule is None or "redirect" not in rule
    assert (HOST, "/productpage", 301) in lab["gateway"].requests  # the role's HTTP check followed the redirect rule
    again = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=extra)
    assert again.rc == 0 and again.changed == 0, again.explain()
    back = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=lab["extra"])
    assert back.rc == 0, back.explain()


def test_certificate_never_ready_fails_with_cert_managers_reason(k8s, lab):
    extra = dict(lab["extra"], ingress_tls_certificate_name=NEVER_READY, ingress_tls_certificate_timeout=15)
    run = run_playbook(SITE, "--tags", "tls", extra_vars=extra)
    assert run.rc != 0
    message = " ".join(run.failures())
    assert f"Certificate {GW_NS}/{NEVER_READY} is not ready" in message, message
    assert 'order is in "invalid" state: 403 urn:ietf:params:acme:error:unauthorized' in message, message
    assert "Other conditions of the Certificate: Issuing=False (Failed: The certificate request has failed" in message, message
    assert f"CertificateRequest {NEVER_READY}-1" in message, message
    assert f"kubectl -n {GW_NS} describe certificate {NEVER_READY}" in message, message
    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(GROUP, VERSION, GW_NS, "certificates", NEVER_READY)
    # Back to the converged state.
    run = run_playbook(SITE, *TAGS, extra_vars=lab["extra"])
    assert run.rc == 0, run.explain()


BAD_INPUTS = [
    ({"ingress_tls_acme_email": ""}, "ingress_tls_acme_email is required"),
    ({"ingress_tls_acme_email": "mesh-admin.servicemesh-istio.dev"}, "is not an e-mail address"),
    ({"ingress_tls_acme_email": "admin@example.com"}, "reserved domain that Let's Encrypt refuses"),
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
]


@pytest.mark.parametrize("bad,expected", BAD_INPUTS, ids=[
    "email-missing", "email-malformed", "email-reserved", "host-invalid", "host-url", "environment-unknown",
    "dns01-secret-missing", "dns01-rfc2136-no-tsig"])
def test_bad_input_is_refused_before_any_change(k8s, lab, bad, expected):
    before = tls_snapshot(k8s)
    run = run_playbook(SITE, "--tags", "ingress,tls", extra_vars=dict(lab["extra"], **bad))
    assert run.rc != 0
    message = " ".join(run.failures())
    assert expected in message, message
    assert run.changed == 0, run.explain()
    assert tls_snapshot(k8s) == before


def test_webhook_check_waits_for_a_webhook_that_does_not_serve(k8s, lab):
    """Put the chart's ValidatingWebhookConfiguration back (its Service has no
    serving pod here): the role's dry-run create is refused through it, and the
    role stops before creating anything, quoting the API server."""
    manifest = subprocess.run(["helm", "get", "manifest", "cert-manager", "-n", CM_NS], capture_output=True,
                              text=True, check=True).stdout
    vwc = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "ValidatingWebhookConfiguration"]
    assert len(vwc) == 1
    applied = kubectl("apply", "-f", "-", stdin=json.dumps(vwc[0]))
    assert applied.returncode == 0, applied.stderr
    try:
        before = tls_snapshot(k8s)
        extra = dict(lab["extra"], ingress_tls_cert_manager_admission_webhooks=True,
                     ingress_tls_cert_manager_wait_timeout=10)
        run = run_playbook(SITE, "--tags", "tls", extra_vars=extra)
        assert run.rc != 0
        message = " ".join(run.failures())
        assert "cert-manager's webhook did not accept a resource within 10 s" in message, message
        assert 'failed calling webhook "webhook.cert-manager.io"' in message, message
        assert tls_snapshot(k8s) == before
    finally:
        kubectl("delete", "validatingwebhookconfiguration", "cert-manager-webhook", "--ignore-not-found")


@pytest.mark.parametrize("solver", [
    {"ingress_tls_acme_solver": "dns01", "ingress_tls_dns01_provider": "rfc2136",
     "ingress_tls_dns01_rfc2136_nameserver": f"{ZONE_NS_ADDR}:53"},
    {"ingress_tls_acme_solver": "dns01", "ingress_tls_dns01_provider": "other",
     "ingress_tls_dns01_solver_config": {"cloudflare": {"apiTokenSecretRef": {"name": "cloudflare-api-token",
                                                                              "key": "api-token"}}},
     "ingress_tls_dns01_secret_name": "cloudflare-api-token",
     "ingress_tls_dns01_secret_data": {"api-token": "not-a-real-token"}},
    {"ingress_tls_acme_environment": "production"},
], ids=["dns01-rfc2136", "dns01-secret-ref", "production"])
def test_other_issuers_are_accepted_by_the_api_server_in_check_mode(k8s, lab, solver):
    """--check sends the ClusterIssuer (and the DNS-01 Secret) as a server-side
    dry run: the real CRD schema accepts them, nothing is stored, no secret is shown."""
    before = tls_snapshot(k8s)
    run = run_playbook(SITE, "--tags", "tls", "--check", "--diff", extra_vars=dict(lab["extra"], **solver))
    assert run.rc == 0, run.explain()
    applied = [r for n, _h, r in run.task_results() if n.endswith("Apply the ClusterIssuer (%s)" % (
        solver.get("ingress_tls_acme_environment", "staging")))]
    assert applied and applied[0]["changed"], run.explain()
    spec = applied[0]["result"]["spec"]["acme"]
    if solver.get("ingress_tls_acme_environment") == "production":
        assert spec["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    elif solver["ingress_tls_dns01_provider"] == "rfc2136":
        assert spec["solvers"] == [{"dns01": {"rfc2136": {
            "nameserver": f"{ZONE_NS_ADDR}:53", "tsigKeyName": TSIG_NAME, "tsigAlgorithm": "HMACSHA256",
            "tsigSecretSecretRef": {"name": "letsencrypt-staging-dns01", "key": "tsig-secret"}}}}]
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
        run = run_playbook(SITE, "--tags", "tls", extra_vars=lab["extra"])
        assert run.rc != 0
        message = " ".join(run.failures())
        assert f"{APP_NS}/legacy-redirect set tls.httpsRedirect on a port 80 server for {HOST}" in message, message
    finally:
        custom.delete_namespaced_custom_object("networking.istio.io", "v1", APP_NS, "gateways", "legacy-redirect")


def test_mesh_wide_istio_mutual_gets_a_narrow_exception_for_the_solver(k8s, lab):
    custom = client.CustomObjectsApi(k8s)
    mesh_wide = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                 "metadata": {"name": "mesh-wide-mtls", "namespace": GW_NS},
                 "spec": {"host": "*.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
    custom.create_namespaced_custom_object("networking.istio.io", "v1", GW_NS, "destinationrules", mesh_wide)
    try:
        run = run_playbook(SITE, "--tags", "tls", extra_vars=lab["extra"])
        assert run.rc == 0, run.explain()
        dr = custom.get_namespaced_custom_object("networking.istio.io", "v1", GW_NS, "destinationrules",
                                                 "acme-http01-solver-plaintext")
        assert dr["spec"] == {
            "host": f"*.{GW_NS}.svc.cluster.local", "exportTo": ["."],
            "workloadSelector": {"matchLabels": {"istio": "ingressgateway"}},
            "trafficPolicy": {"portLevelSettings": [{"port": {"number": 8089}, "tls": {"mode": "DISABLE"}}]}}
        again = run_playbook(SITE, "--tags", "tls", extra_vars=lab["extra"])
        assert again.rc == 0 and again.changed == 0, again.explain()
    finally:
        for name in ("mesh-wide-mtls", "acme-http01-solver-plaintext"):
            _delete(custom.delete_namespaced_custom_object, "networking.istio.io", "v1", GW_NS, "destinationrules", name)
