"""A local ACME lab on loopback: DNS servers (knotd) and an ACME server (Pebble).

Part of the local test cluster. Used by tests/cluster/test_ingress_tls.py
(its own addresses and TSIG key) and by ``cluster.sh start`` for ``make site``
(``acme_lab.py serve STATE_DIR``: the servers below, their facts written to
``STATE_DIR/acme/site-vars.json`` for hack/testcluster/site-vars.yml).

- ``knot()``: one knotd serving one zone on ``<address>:53``, optionally taking
  RFC 2136 updates signed with a TSIG key (the role's A record, cert-manager's
  DNS-01 TXT records);
- ``Pebble``: Let's Encrypt's ACME test server (built by build.sh, pinned in
  versions.env) on ``<address>:14000`` (ACME) and ``:15000`` (management),
  with an HTTPS certificate for its address signed by a CA made here (the CA a
  ClusterIssuer must trust: ``ingress_tls_acme_ca_bundle``), resolving every
  name through one DNS server (``-dnsserver``), validating at once
  (``PEBBLE_VA_NOSLEEP``) and never rejecting a good nonce
  (``PEBBLE_WFE_NONCEREJECT=0``), so that issuance is deterministic.
  ``issuing_roots()`` reads the roots of the certificates it issues from its
  management interface.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TC_DIR = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio"))
ACME_PORT, MGMT_PORT = 14000, 15000


def versions() -> dict[str, str]:
    out = {}
    for line in (TC_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value.strip('"')
    return out


def wait_port(address: str, port: int, what: str, timeout: float, proc: subprocess.Popen | None = None,
              logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((address, port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = logfile.read_text()[-2000:] if logfile and logfile.is_file() else ""
    raise RuntimeError(f"{what} did not listen on {address}:{port} within {timeout} s\n{tail}")


def knot(workdir: Path, address: str, zone: str, records: str, tsig: tuple[str, str] | None = None
         ) -> subprocess.Popen:
    """knotd serving ``zone`` on address:53; ``tsig`` (name, base64 secret)
    allows RFC 2136 updates signed with that key."""
    for sub in ("run", "db", "zones"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    conf = [
        "server:", f'    rundir: "{workdir / "run"}"', f"    listen: {address}@53",
        "    udp-workers: 1", "    tcp-workers: 1", "    background-workers: 1",
        "database:", f'    storage: "{workdir / "db"}"',
        "log:", "  - target: stderr", "    any: info",
    ]
    if tsig:
        conf += ["key:", f"  - id: {tsig[0]}", "    algorithm: hmac-sha256", f"    secret: {tsig[1]}",
                 "acl:", "  - id: update", f"    key: {tsig[0]}", "    action: update"]
    conf += ["template:", "  - id: default", f'    storage: "{workdir / "zones"}"', "    semantic-checks: off",
             "    zonefile-sync: -1", "    journal-content: changes",
             "zone:", f'  - domain: "{zone}"', '    file: "zone.db"']
    if tsig:
        conf.append("    acl: update")
    (workdir / "knot.conf").write_text("\n".join(conf) + "\n")
    (workdir / "zones" / "zone.db").write_text(
        f"$TTL 60\n@ IN SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 60\n{records}\n")
    logfile = workdir / "knotd.log"
    with logfile.open("wb") as log:
        proc = subprocess.Popen([shutil.which("knotd") or "/usr/sbin/knotd", "-c", str(workdir / "knot.conf")],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(address, 53, f"knotd ({zone})", 10, proc, logfile)
    return proc


def _cert(subject: str, issuer_key, issuer_name, key, days: int, ca: bool, san_ip: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san_ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
                                        critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                        critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


class Pebble:
    """One Pebble on ``address`` resolving through ``dns_server`` (host:port)."""

    def __init__(self, workdir: Path, address: str, dns_server: str):
        self.workdir, self.address, self.dns_server = Path(workdir), address, dns_server
        self.proc: subprocess.Popen | None = None
        self.directory = f"https://{address}:{ACME_PORT}/dir"
        self.ca_file = self.workdir / "https-ca.pem"
        self.logfile = self.workdir / "pebble.log"

    @staticmethod
    def binary() -> Path:
        return CACHE / "bin" / f"pebble-{versions()['PEBBLE_VERSION']}" / "pebble"

    def start(self) -> Pebble:
        binary = self.binary()
        if not binary.is_file():
            raise RuntimeError(f"{binary} is missing; build it with hack/testcluster/build.sh pebble")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The CA of Pebble's HTTPS listener: what the ClusterIssuer's caBundle trusts.
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("smistio ACME server CA", None, None, ca_key, 365, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert(self.address, ca_key, ca.subject, key, 365, ca=False, san_ip=self.address)
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (self.workdir / "https.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (self.workdir / "https.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (self.workdir / "https.key").chmod(0o600)
        conf = {"pebble": {
            "listenAddress": f"{self.address}:{ACME_PORT}",
            "managementListenAddress": f"{self.address}:{MGMT_PORT}",
            "certificate": str(self.workdir / "https.pem"),
            "privateKey": str(self.workdir / "https.key"),
            # HTTP-01 and TLS-ALPN-01 validation go to the standard ports.
            "httpPort": 80, "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "retryAfter": {"authz": 1, "order": 1},
            "keyAlgorithm": "ecdsa",
            "profiles": {"default": {"description": "90 days, like Let's Encrypt", "validityPeriod": 7776000}},
        }}
        (self.workdir / "pebble.json").write_text(json.dumps(conf, indent=2))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "-config", str(self.workdir / "pebble.json"), "-dnsserver", self.dns_server],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.address, ACME_PORT, "Pebble", 20, self.proc, self.logfile)
        return self

    def _get(self, path: str) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"https://{self.address}:{MGMT_PORT}{path}", context=ctx, timeout=5) as resp:
            return resp.read()

    def issuing_roots(self) -> bytes:
        """PEM of the root that the certificates Pebble issues chain to."""
        return self._get("/roots/0")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# Addresses of the lab `cluster.sh start` runs for `make site` (the tests use
# 127.0.53.x and their own Pebble, so both can run at once).
SITE_PARENT, SITE_ZONE, SITE_ACME = "127.0.54.1", "127.0.54.2", "127.0.55.1"
SITE_ZONE_NAME, SITE_TSIG_NAME = "smistio.test.", "smistio-site-update"


def serve(state: Path) -> int:
    """cluster.sh's component: the DNS servers and Pebble for `make site`."""
    work = state / "acme"
    work.mkdir(parents=True, exist_ok=True)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    procs = [
        knot(work / "parent", SITE_PARENT, "test.",
             f"@ IN NS ns\nns IN A {SITE_PARENT}\nsmistio IN NS ns1.smistio\nns1.smistio IN A {SITE_ZONE}"),
        knot(work / "zone", SITE_ZONE, SITE_ZONE_NAME, f"@ IN NS ns1\nns1 IN A {SITE_ZONE}",
             tsig=(SITE_TSIG_NAME, secret)),
    ]
    pebble = Pebble(work / "pebble", SITE_ACME, f"{SITE_ZONE}:53").start()
    roots = work / "issuing-roots.pem"
    roots.write_bytes(pebble.issuing_roots())
    facts = {
        "parent": SITE_PARENT, "zone_server": SITE_ZONE, "tsig_name": SITE_TSIG_NAME, "tsig_secret": secret,
        "acme_directory": pebble.directory, "acme_ca_bundle": str(pebble.ca_file),
        "issuing_roots": str(roots),
    }
    out = work / "site-vars.json"
    out.write_text(json.dumps(facts, indent=2))
    out.chmod(0o600)
    print(time.strftime("%H:%M:%S"), f"ACME lab: knotd test. on {SITE_PARENT}, {SITE_ZONE_NAME} on {SITE_ZONE} "
          f"(RFC 2136 with TSIG key {SITE_TSIG_NAME}), Pebble {pebble.directory}; facts in {out}", flush=True)
    running = True

    def stop(_sig, _frame):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while running:
        for p in [*procs, pebble.proc]:
            if p.poll() is not None:
                print(time.strftime("%H:%M:%S"), f"ACME lab: {p.args[0]} exited with {p.returncode}", flush=True)
                running = False
        time.sleep(1)
    pebble.stop()
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: acme_lab.py serve STATE_DIR")
    sys.exit(serve(Path(sys.argv[2])))
