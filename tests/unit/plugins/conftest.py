# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the module unit tests: real servers on loopback only.

- ``dns_lab``: starts knotd (authoritative DNS) and dnsmasq processes on
  127.x.y.z addresses of a per-test /24 and a free port shared by all of them.
- ``test_ca`` / ``tls_server``: a CA made with ``cryptography`` and a threaded
  TLS server whose certificate can be swapped while it runs.
- ``fake_kube``: a minimal Kubernetes API (HTTP on loopback) that serves
  Secrets and cert-manager objects from a dict, for the real ``kubernetes``
  client used by the module.
- ``run_module``: runs a module's ``main()`` in-process with
  ``patch_module_args`` and returns its JSON result.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KNOTD = shutil.which('knotd') or '/usr/sbin/knotd'
KNOTC = shutil.which('knotc') or '/usr/sbin/knotc'
DNSMASQ = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'


# ---------------------------------------------------------------------------
# Running modules in-process
# ---------------------------------------------------------------------------

class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get('failed'))


@pytest.fixture
def run_module(monkeypatch):
    """``run_module(main, args, check_mode=False) -> dict`` (``failed`` set on fail_json).

    The module runs as it does on a target: once anything in the test process
    has imported Ansible's controller code (the AWX render does),
    ``module_utils._internal.is_controller`` is true and a module's warnings
    would go to the controller's display instead of its result.
    """
    from ansible.module_utils import _internal

    def _run(main, args, check_mode=False):
        args = dict(args)
        if check_mode:
            args['_ansible_check_mode'] = True
        buf = io.StringIO()
        monkeypatch.setattr(_internal, 'is_controller', False)
        with patch_module_args(args), redirect_stdout(buf):
            with pytest.raises(SystemExit):
                main()
        out = buf.getvalue()
        try:
            return ModuleResult(json.loads(out))
        except ValueError:
            raise AssertionError('module printed no JSON: %r' % out)

    return _run


# ---------------------------------------------------------------------------
# Loopback addresses and ports
# ---------------------------------------------------------------------------

def _port_free(address, port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def free_port(addresses):
    """A port free for UDP and TCP on every address."""
    for dummy in range(200):
        port = random.randint(20000, 60000)
        if all(_port_free(a, port) for a in addresses):
            return port
    raise RuntimeError('no free port on %s' % (addresses,))


@pytest.fixture
def loopback_net():
    """A per-test prefix ``127.A.B.`` so that parallel or leftover servers never clash."""
    return '127.%d.%d.' % (random.randint(10, 250), random.randint(1, 250))


def wait_for_port(address, port, kind=socket.SOCK_STREAM, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError('%s:%d did not come up' % (address, port))


# ---------------------------------------------------------------------------
# DNS servers
# ---------------------------------------------------------------------------

SOA_TEMPLATE = '$TTL {ttl}\n@ IN SOA ns.{zone} hostmaster.{zone} {serial} 3600 600 86400 60\n'


class KnotServer:
    """One knotd serving ``zones`` ({zone name: records text}) on address@port."""

    def __init__(self, workdir, address, port, zones, ttl=300):
        self.dir = Path(workdir)
        self.address = address
        self.port = port
        self.ttl = ttl
        self.serial = 1
        self.zones = {}
        self.proc = None
        for sub in ('run', 'db', 'zones'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / 'knot.conf'
        lines = [
            'server:',
            '    rundir: "%s"' % (self.dir / 'run'),
            '    listen: %s@%d' % (address, port),
            '    udp-workers: 1',
            '    tcp-workers: 1',
            '    background-workers: 1',
            'database:',
            '    storage: "%s"' % (self.dir / 'db'),
            'log:',
            '  - target: stderr',
            '    any: warning',
            'template:',
            '  - id: default',
            '    storage: "%s"' % (self.dir / 'zones'),
            '    semantic-checks: off',
            '    zonefile-sync: -1',
            '    journal-content: none',
            'zone:',
        ]
        for zone in zones:
            lines.append('  - domain: "%s"' % zone)
            lines.append('    file: "%s.zone"' % (zone.strip('.') or 'root'))
        self.conf.write_text('\n'.join(lines) + '\n')
        for zone, records in zones.items():
            self._write_zone(zone, records)

    def _write_zone(self, zone, records):
        self.zones[zone] = records
        header = SOA_TEMPLATE.format(ttl=self.ttl, zone=zone if zone != '.' else '', serial=self.serial)
        if zone == '.':
            header = header.replace('ns. hostmaster.', 'ns.root. hostmaster.root.')
        (self.dir / 'zones' / ('%s.zone' % (zone.strip('.') or 'root'))).write_text(header + records + '\n')

    def start(self):
        self.log = open(self.dir / 'knotd.log', 'wb')
        self.proc = subprocess.Popen([KNOTD, '-c', str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.address, self.port)
        return self

    def set_zone(self, zone, records):
        """Replace a zone's records and reload it (blocking until loaded)."""
        self.serial += 1
        self._write_zone(zone, records)
        subprocess.run([KNOTC, '-c', str(self.conf), '-b', 'zone-reload', zone], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.log.close()
        self.proc = None


class DnsmasqServer:
    """dnsmasq as a resolver that knows a few host records and, with
    ``forward`` ({domain: (address, port)}), sends the queries for a domain to
    that server (like a corporate resolver that forwards an internal zone)."""

    def __init__(self, workdir, address, port, records, forward=None):
        self.address = address
        self.port = port
        self.records = records
        self.forward = forward or {}
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def start(self):
        args = [DNSMASQ, '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll',
                '--bind-interfaces', '--listen-address=%s' % self.address, '--port=%d' % self.port,
                '--pid-file=', '--conf-file=/dev/null', '--log-facility=-', '--user=root']
        for name, address in self.records:
            args.append('--host-record=%s,%s' % (name, address))
        for domain, (address, port) in sorted(self.forward.items()):
            args.append('--server=/%s/%s#%d' % (domain, address, port))
        self.log = open(self.dir / 'dnsmasq.log', 'wb')
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.address, self.port)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
            self.log.close()
        self.proc = None


class DnsLab:
    """A fake DNS tree on loopback: ``example.`` on <net>1 delegates
    ``mesh.example.`` to ns1.mesh.example (<net>2) and ns2.mesh.example (<net>3)."""

    def __init__(self, tmp_path, net):
        self.tmp = tmp_path
        self.net = net
        self.parent_addr = net + '1'
        self.ns1_addr = net + '2'
        self.ns2_addr = net + '3'
        self.resolver_addr = net + '9'
        self.port = free_port([self.parent_addr, self.ns1_addr, self.ns2_addr, self.resolver_addr, net + '7'])
        self.unused_addr = net + '7'  # nothing listens there
        self.servers = []

    def parent_zone(self, delegate_to=('ns1', 'ns2')):
        lines = ['@ IN NS ns.example.', 'ns IN A %s' % self.parent_addr]
        addrs = {'ns1': self.ns1_addr, 'ns2': self.ns2_addr, 'ns3': self.unused_addr}
        for ns in delegate_to:
            lines.append('mesh IN NS %s.mesh' % ns)
            lines.append('%s.mesh IN A %s' % (ns, addrs[ns]))
        return '\n'.join(lines)

    @staticmethod
    def child_zone(records='', nameservers=('ns1', 'ns2'), addrs=None):
        lines = ['@ IN NS %s' % ns for ns in nameservers]
        for ns, addr in (addrs or {}).items():
            lines.append('%s IN A %s' % (ns, addr))
        return '\n'.join(lines) + '\n' + records

    def knot(self, name, address, zones, ttl=300):
        server = KnotServer(self.tmp / name, address, self.port, zones, ttl=ttl).start()
        self.servers.append(server)
        return server

    def start_tree(self, ns1_records='', ns2_records=None, delegate_to=('ns1', 'ns2')):
        """Parent plus the two child nameservers; returns (parent, ns1, ns2)."""
        if ns2_records is None:
            ns2_records = ns1_records
        addrs = {'ns1': self.ns1_addr, 'ns2': self.ns2_addr}
        parent = self.knot('parent', self.parent_addr, {'example.': self.parent_zone(delegate_to)})
        ns1 = self.knot('ns1', self.ns1_addr, {'mesh.example.': self.child_zone(ns1_records, addrs=addrs)})
        ns2 = self.knot('ns2', self.ns2_addr, {'mesh.example.': self.child_zone(ns2_records, addrs=addrs)})
        return parent, ns1, ns2

    def dnsmasq(self, records, forward=None):
        server = DnsmasqServer(self.tmp / 'dnsmasq', self.resolver_addr, self.port, records, forward).start()
        self.servers.append(server)
        return server

    def start_servers(self):
        return [{'host': self.parent_addr, 'port': self.port}]

    def stop(self):
        for server in self.servers:
            server.stop()


@pytest.fixture
def dns_lab(tmp_path, loopback_net):
    lab = DnsLab(tmp_path, loopback_net)
    try:
        yield lab
    finally:
        lab.stop()


# ---------------------------------------------------------------------------
# Test CA and certificates
# ---------------------------------------------------------------------------

def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class IssuedCert:
    def __init__(self, cert, key, chain):
        self.cert = cert
        self.key = key
        self.chain = chain  # certificates after the leaf

    @property
    def cert_pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self):
        return self.cert_pem + b''.join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    @property
    def key_pem(self):
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def fingerprint(self):
        return self.cert.fingerprint(hashes.SHA256()).hex()

    def write(self, directory, name):
        directory = Path(directory)
        cert_path = directory / ('%s.crt' % name)
        key_path = directory / ('%s.key' % name)
        cert_path.write_bytes(self.chain_pem)
        key_path.write_bytes(self.key_pem)
        return str(cert_path), str(key_path)


class TestCA:
    """A root CA and an intermediate, like a public ACME CA."""

    def __init__(self, organization='Test Encrypt', common_name='Test Root X1'):
        self.organization = organization
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, 'US'),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])
        self.root = self._ca_cert(root_name, root_name, self.root_key, self.root_key, path_length=1)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.int_name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, 'US'),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, 'T1'),
        ])
        self.intermediate = self._ca_cert(self.int_name, root_name, self.int_key, self.root_key, path_length=0)

    @staticmethod
    def _ca_cert(subject, issuer, key, signing_key, path_length):
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if issuer != subject:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    def write_bundle(self, directory):
        path = Path(directory) / 'ca-bundle.pem'
        path.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def issue(self, *dns_names, days_valid=90, not_before=None, not_after=None, self_signed=False, common_name=None):
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_before = not_before or (now - datetime.timedelta(hours=1))
        not_after = not_after or (now + datetime.timedelta(days=days_valid))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or dns_names[0])])
        issuer = subject if self_signed else self.int_name
        signing_key = key if self_signed else self.int_key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.int_key.public_key()), critical=False)
        cert = builder.sign(signing_key, hashes.SHA256())
        return IssuedCert(cert, key, [] if self_signed else [self.intermediate])


@pytest.fixture(scope='session')
def test_ca():
    return TestCA()


@pytest.fixture(scope='session')
def staging_ca():
    return TestCA(organization='(STAGING) Test Encrypt', common_name='(STAGING) Pretend Root X1')


@pytest.fixture
def ca_bundle(test_ca, tmp_path):
    return test_ca.write_bundle(tmp_path)


# ---------------------------------------------------------------------------
# TLS server
# ---------------------------------------------------------------------------

class TLSServer:
    """Accepts TLS connections on address:port and serves ``cert`` (swappable)."""

    def __init__(self, address, port, issued, workdir):
        self.address = address
        self.port = port
        self.workdir = Path(workdir)
        self.counter = 0
        self.context = None
        self.serve(issued)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def serve(self, issued):
        """Serve another certificate from the next handshake on."""
        self.counter += 1
        cert_path, key_path = issued.write(self.workdir, 'served-%d' % self.counter)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.context = context
        self.issued = issued

    def _loop(self):
        while not self.stopping.is_set():
            try:
                conn, dummy = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, self.context), daemon=True).start()

    @staticmethod
    def _handle(conn, context):
        conn.settimeout(3)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                try:
                    tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass
        except (OSError, ssl.SSLError):
            conn.close()

    def stop(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(2)


@pytest.fixture
def tls_server(tmp_path, loopback_net):
    """``tls_server(issued) -> TLSServer`` on a free port of <net>20."""
    servers = []

    def _start(issued, address=None):
        address = address or loopback_net + '20'
        port = free_port([address])
        server = TLSServer(address, port, issued, tmp_path)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------
# A fake Kubernetes API server
# ---------------------------------------------------------------------------

class FakeKube:
    """Serves GET of Secrets and cert-manager objects from ``self.objects``.

    Keys are (api path prefix, plural, namespace, name); list requests return
    every object of that plural in the namespace.
    """

    TOKEN = 'fake-token-for-tests'

    def __init__(self, address):
        self.objects = {}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append((self.path, self.headers.get('Authorization')))
                if self.headers.get('Authorization') != 'Bearer %s' % FakeKube.TOKEN:
                    self._send(401, {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure',
                                     'message': 'Unauthorized', 'reason': 'Unauthorized', 'code': 401})
                    return
                path = self.path.split('?')[0].strip('/').split('/')
                # api/v1/namespaces/NS/PLURAL[/NAME] or apis/G/V/namespaces/NS/PLURAL[/NAME]
                prefix = '/'.join(path[:2]) if path[0] == 'api' else '/'.join(path[:3])
                rest = path[2:] if path[0] == 'api' else path[3:]
                if len(rest) < 3 or rest[0] != 'namespaces':
                    self._send(404, {'kind': 'Status', 'code': 404, 'reason': 'NotFound', 'message': 'no such path'})
                    return
                namespace, plural = rest[1], rest[2]
                if len(rest) == 3:
                    items = [v for (p, pl, ns, n), v in sorted(fake.objects.items())
                             if p == prefix and pl == plural and ns == namespace]
                    self._send(200, {'kind': 'List', 'apiVersion': 'v1', 'metadata': {}, 'items': items})
                    return
                obj = fake.objects.get((prefix, plural, namespace, rest[3]))
                if obj is None:
                    self._send(404, {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'code': 404,
                                     'reason': 'NotFound',
                                     'message': '%s "%s" not found' % (plural, rest[3])})
                    return
                self._send(200, obj)

        self.server = ThreadingHTTPServer((address, free_port([address])), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = 'http://%s:%d' % self.server.server_address

    def auth_args(self):
        return {'host': self.url, 'api_key': self.TOKEN, 'validate_certs': False}

    def put_secret(self, namespace, name, issued=None, cert_pem=None, key_pem=None, secret_type='kubernetes.io/tls'):
        cert_pem = cert_pem if cert_pem is not None else issued.chain_pem
        key_pem = key_pem if key_pem is not None else issued.key_pem
        data = {}
        if cert_pem:
            data['tls.crt'] = base64.b64encode(cert_pem).decode()
        if key_pem:
            data['tls.key'] = base64.b64encode(key_pem).decode()
        self.objects[('api/v1', 'secrets', namespace, name)] = {
            'apiVersion': 'v1', 'kind': 'Secret', 'type': secret_type,
            'metadata': {'name': name, 'namespace': namespace}, 'data': data,
        }

    def delete_secret(self, namespace, name):
        self.objects.pop(('api/v1', 'secrets', namespace, name), None)

    def put_certificate(self, namespace, name, secret_name, dns_names, ready, not_after=None, reason='Ready',
                        message='Certificate is up to date and has not expired', generation=1, uid='uid-1'):
        status = {'conditions': [{
            'type': 'Ready', 'status': 'True' if ready else 'False', 'reason': reason, 'message': message,
            'observedGeneration': generation, 'lastTransitionTime': '2026-01-01T00:00:00Z'}]}
        if not_after:
            status['notAfter'] = not_after
        self.objects[('apis/cert-manager.io/v1', 'certificates', namespace, name)] = {
            'apiVersion': 'cert-manager.io/v1', 'kind': 'Certificate',
            'metadata': {'name': name, 'namespace': namespace, 'generation': generation, 'uid': uid},
            'spec': {'secretName': secret_name, 'dnsNames': list(dns_names),
                     'issuerRef': {'name': 'letsencrypt', 'kind': 'ClusterIssuer'}},
            'status': status,
        }

    def put(self, prefix, plural, namespace, obj):
        self.objects[(prefix, plural, namespace, obj['metadata']['name'])] = obj

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_kube(loopback_net):
    kube = FakeKube(loopback_net + '30')
    try:
        yield kube
    finally:
        kube.stop()


def later(delay, func, *args, **kwargs):
    """Run ``func`` in a thread after ``delay`` seconds; returns the thread."""

    def _run():
        time.sleep(delay)
        func(*args, **kwargs)

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def run_later():
    threads = []

    def _later(delay, func, *args, **kwargs):
        thread = later(delay, func, *args, **kwargs)
        threads.append(thread)
        return thread

    yield _later
    for thread in threads:
        thread.join(10)
