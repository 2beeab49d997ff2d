# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""servicemesh.istio.wait_for_certificate, resource layer, against the real
kube-apiserver of the local test cluster with cert-manager's CRDs.

cert-manager itself does not run: the test plays its part by writing the
status subresource (conditions, notAfter) and the TLS Secret. The module runs
as Ansible runs it (``ansible localhost -m ...``) with the cluster's kubeconfig.

Run inside the cluster's network namespace:
    hack/testcluster/cluster.sh exec -- .venv/bin/pytest tests/cluster/test_wait_for_certificate_cluster.py
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
HOST = 'istio.mesh.example'
GROUP, VERSION = 'cert-manager.io', 'v1'


@pytest.fixture(scope='module')
def api(kubeconfig):
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture
def cm_namespace(api, cert_manager_crds):
    """A dedicated namespace per test, deleted afterwards."""
    from kubernetes import client

    name = 'wfc-%s' % uuid.uuid4().hex[:8]
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def _self_signed(name, days=90):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert, cert_pem, key_pem, key


def _create_certificate(api, namespace, name, secret_name):
    from kubernetes import client

    body = {
        'apiVersion': '%s/%s' % (GROUP, VERSION), 'kind': 'Certificate',
        'metadata': {'name': name, 'namespace': namespace},
        'spec': {'secretName': secret_name, 'dnsNames': [HOST],
                 'issuerRef': {'name': 'letsencrypt', 'kind': 'ClusterIssuer', 'group': GROUP}},
    }
    return client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, 'certificates', body)


def _set_certificate_status(api, namespace, name, ready, reason, message, not_after=None):
    """Play cert-manager: write the Certificate's status subresource."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    cert = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, 'certificates', name)
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    status = {'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'False', 'reason': reason,
                              'message': message, 'lastTransitionTime': now,
                              'observedGeneration': cert['metadata']['generation']}]}
    if not_after:
        status['notAfter'] = not_after
    cert['status'] = status
    custom.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, 'certificates', name, cert)
    return cert


def _create_certificate_request(api, namespace, cert, key):
    """A CertificateRequest owned by the Certificate, Pending, as cert-manager would leave it."""
    from kubernetes import client

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
           .sign(key, hashes.SHA256()))
    name = '%s-1' % cert['metadata']['name']
    body = {
        'apiVersion': '%s/%s' % (GROUP, VERSION), 'kind': 'CertificateRequest',
        'metadata': {'name': name, 'namespace': namespace,
                     'annotations': {'cert-manager.io/certificate-name': cert['metadata']['name'],
                                     'cert-manager.io/certificate-revision': '1'},
                     'ownerReferences': [{'apiVersion': '%s/%s' % (GROUP, VERSION), 'kind': 'Certificate',
                                          'name': cert['metadata']['name'], 'uid': cert['metadata']['uid'],
                                          'controller': True, 'blockOwnerDeletion': True}]},
        'spec': {'request': base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                 'issuerRef': {'name': 'letsencrypt', 'kind': 'ClusterIssuer', 'group': GROUP}},
    }
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, 'certificaterequests', body)
    created['status'] = {'conditions': [
        {'type': 'Approved', 'status': 'True', 'reason': 'cert-manager.io', 'message': 'approved',
         'lastTransitionTime': '2026-01-01T00:00:00Z'},
        {'type': 'Ready', 'status': 'False', 'reason': 'Pending',
         'message': 'Waiting on certificate issuance from order %s/%s-42: "pending"' % (namespace, name),
         'lastTransitionTime': '2026-01-01T00:00:00Z'}]}
    custom.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, 'certificaterequests', name, created)


def _write_secret(api, namespace, name, cert_pem, key_pem):
    from kubernetes import client

    client.CoreV1Api(api).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name), type='kubernetes.io/tls',
        data={'tls.crt': base64.b64encode(cert_pem).decode(), 'tls.key': base64.b64encode(key_pem).decode()}))


def _descendants(pid):
    """Command lines of the processes below ``pid`` (read from /proc)."""
    parents, cmdlines = {}, {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            cmdlines[int(entry.name)] = (entry / 'cmdline').read_bytes().split(b'\0')
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(')', 1)[1].split()[1])
    out = []
    for child, cmd in cmdlines.items():
        p = parents.get(child)
        while p and p != pid:
            p = parents.get(p)
        if p == pid:
            out.append([c.decode(errors='replace') for c in cmd if c])
    return out


def _wait_for_module_process(pid, timeout):
    """Until ansible runs the module: a Python process below it that is not ansible itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(cmd and 'python' in os.path.basename(cmd[0]) and not any('ansible' in c for c in cmd)
               for cmd in _descendants(pid)):
            return
        time.sleep(0.1)
    raise AssertionError('ansible did not start the module within %d s' % timeout)


def _missing_secret_reads(kubeconfig):
    """How many GETs of a Secret the API server has answered with 404 (its own
    apiserver_request_total). In this test only the module reads a Secret that
    does not exist: the TLS Secret it waits for."""
    out = subprocess.run(['kubectl', '--kubeconfig', kubeconfig, 'get', '--raw', '/metrics'], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return sum(float(line.rsplit(' ', 1)[1]) for line in out.splitlines()
               if line.startswith('apiserver_request_total{') and 'group=""' in line
               and 'resource="secrets"' in line and 'verb="GET"' in line and 'code="404"' in line)


def _ansible(kubeconfig, args):
    """Start ``ansible localhost -m servicemesh.istio.wait_for_certificate`` with JSON output."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(REPO / '.collections'),
        ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
        ANSIBLE_STDOUT_CALLBACK='ansible.posix.json',
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_LOCALHOST_WARNING='0',
        ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
    )
    module_args = dict(args, kubeconfig=kubeconfig)
    cmd = [str(REPO / '.venv/bin/ansible'), 'localhost', '-c', 'local',
           '-e', 'ansible_python_interpreter=%s' % (REPO / '.venv/bin/python'),
           '-m', 'servicemesh.istio.wait_for_certificate', '-a', json.dumps(module_args)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    try:
        doc = json.loads(out)
    except ValueError:
        raise AssertionError('no JSON from ansible (rc %s): %s\n%s' % (proc.returncode, out[-2000:], err[-2000:]))
    return doc['plays'][0]['tasks'][0]['hosts']['localhost']


def test_not_ready_then_ready(api, kubeconfig, cm_namespace):
    name, secret = 'gw-cert', 'gw-cert-tls'
    cert_obj, cert_pem, key_pem, key = _self_signed(HOST)
    _create_certificate(api, cm_namespace, name, secret)
    created = _set_certificate_status(api, cm_namespace, name, False, 'Issuing',
                                      'Issuing certificate as Secret does not exist')
    _create_certificate_request(api, cm_namespace, created, key)

    # While not ready, the message explains why, with the CertificateRequest's state.
    result = _result(_ansible(kubeconfig, {'certificate': name, 'secret': secret, 'namespace': cm_namespace,
                                           'timeout': 1, 'initial_sleep': 0.3, 'max_sleep': 0.5}))
    assert result.get('failed') is True
    msg = result['msg']
    assert 'Certificate %s/%s is not ready: Ready=False (Issuing: Issuing certificate as Secret does not exist)' % (
        cm_namespace, name) in msg
    assert 'latest CertificateRequest %s-1: Approved=True (cert-manager.io: approved); Ready=False (Pending: ' % (
        name) in msg
    assert 'secret: Secret %s/%s not found' % (cm_namespace, secret) in msg
    assert result['layers_passed'] == []

    # Now wait, and play cert-manager once the module has made its first attempt.
    reads = _missing_secret_reads(kubeconfig)
    proc = _ansible(kubeconfig, {'certificate': name, 'secret': secret, 'namespace': cm_namespace,
                                 'timeout': 60, 'initial_sleep': 0.5, 'max_sleep': 1})
    # The certificate turns Ready only once the module's first attempt is over.
    # An attempt reads the Certificate, then the Secret, so the API server's
    # count of Secret reads answered "not found" shows that the first attempt
    # saw the Certificate not Ready. (Two earlier signals were wrong on the
    # loaded CI machine: a fixed 4 s after the module's process started, when
    # the module was still starting; and the count of Certificate reads, which
    # the garbage collector also makes when it checks the CertificateRequest's
    # owner.) Then a little more, so that the module is between attempts.
    _wait_for_module_process(proc.pid, timeout=60)
    deadline = time.monotonic() + 90
    while _missing_secret_reads(kubeconfig) <= reads:
        assert time.monotonic() < deadline, 'the module did not read the Secret within 90 s'
        assert proc.poll() is None, 'the module ended before its first attempt: %s' % (proc.communicate(),)
        time.sleep(0.2)
    time.sleep(1.5)
    assert proc.poll() is None, 'the module did not wait'
    _write_secret(api, cm_namespace, secret, cert_pem, key_pem)
    not_after = cert_obj.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ')
    _set_certificate_status(api, cm_namespace, name, True, 'Ready',
                            'Certificate is up to date and has not expired', not_after=not_after)
    result = _result(proc)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is False
    assert result['layers_passed'] == ['resource', 'secret']
    assert result['layers']['resource']['ready'] is True
    assert result['layers']['resource']['not_after'] == not_after
    assert result['not_after'] == not_after
    assert result['dns_names'] == [HOST]
    assert result['subject'] == 'CN=%s' % HOST
    assert result['attempts'] > 1
    assert result['elapsed'] >= 0.5  # ansible itself takes a second or two to start the module
    text = json.dumps(result)
    for line in key_pem.decode().splitlines():
        if not line.startswith('-----'):
            assert line not in text


def test_ready_but_secret_missing(api, kubeconfig, cm_namespace):
    name, secret = 'gw-cert', 'gw-cert-tls'
    _create_certificate(api, cm_namespace, name, secret)
    _set_certificate_status(api, cm_namespace, name, True, 'Ready', 'Certificate is up to date and has not expired',
                            not_after='2030-01-01T00:00:00Z')
    start = time.monotonic()
    result = _result(_ansible(kubeconfig, {'certificate': name, 'secret': secret, 'namespace': cm_namespace,
                                           'timeout': 2, 'initial_sleep': 0.5, 'max_sleep': 1}))
    assert result.get('failed') is True
    assert 'Timed out after 2.' in result['msg']
    assert 'secret: Secret %s/%s not found' % (cm_namespace, secret) in result['msg']
    assert result['layers_passed'] == ['resource']
    assert result['layers']['resource']['message'] == \
        'Certificate %s/%s is Ready, notAfter 2030-01-01T00:00:00Z' % (cm_namespace, name)
    assert result['not_after'] == '2030-01-01T00:00:00Z'
    assert time.monotonic() - start < 60
