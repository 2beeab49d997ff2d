# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wait_for_certificate against a real TLS server on loopback, certificates
from a test CA, and a fake Kubernetes API (HTTP on loopback) for the
kubernetes client."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from ansible_collections.servicemesh.istio.plugins.modules import wait_for_certificate

HOST = 'istio.mesh.example'
NS = 'istio-system'


def _served(server, ca_bundle, **kwargs):
    served = {'host': HOST, 'port': server.port, 'address': server.address, 'ca_path': ca_bundle,
              'connect_timeout': 2}
    served.update(kwargs)
    return served


def _args(**kwargs):
    args = {'timeout': 2, 'initial_sleep': 0.2, 'max_sleep': 0.5}
    args.update(kwargs)
    return args


def _assert_no_key_material(result, *issued):
    text = json.dumps(result)
    for cert in issued:
        body = [line for line in cert.key_pem.decode().splitlines() if not line.startswith('-----')]
        for line in body:
            assert line not in text
    assert 'PRIVATE KEY' not in text


# ---------------------------------------------------------------------------
# Served layer and secret layer
# ---------------------------------------------------------------------------

def test_valid_certificate_passes_all_layers(test_ca, ca_bundle, tls_server, fake_kube, run_module):
    good = test_ca.issue(HOST, 'www.mesh.example')
    server = tls_server(good)
    fake_kube.put_secret(NS, 'gw-tls', good)
    result = run_module(wait_for_certificate.main, _args(
        secret='gw-tls', namespace=NS, served=_served(server, ca_bundle), min_days_remaining=30,
        issuer={'organization': 'Test Encrypt', 'common_name': 'T[0-9]'}, **fake_kube.auth_args()))
    assert not result.failed, result['msg']
    assert result['changed'] is False
    assert result['layers_checked'] == ['secret', 'served']
    assert result['layers_passed'] == ['secret', 'served']
    assert result['layers']['served']['verified'] is True
    assert result['layers']['served']['fingerprint_matches'] is True
    assert result['layers']['secret']['key_matches'] is True
    assert result['layers']['secret']['chain_length'] == 2
    assert result['subject'] == 'CN=%s' % HOST
    assert result['sans'] == [HOST, 'www.mesh.example']
    assert result['issuer'] == 'CN=T1,O=Test Encrypt,C=US'
    assert result['serial'] == format(good.cert.serial_number, 'X')
    assert result['fingerprint'].replace(':', '').lower() == good.fingerprint
    assert 89 < result['days_remaining'] <= 90
    assert result['dns_names'] == [HOST]
    assert result['attempts'] == 1
    _assert_no_key_material(result, good)


def test_expired_certificate_fails(test_ca, ca_bundle, tls_server, fake_kube, run_module):
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = test_ca.issue(HOST, not_before=now - datetime.timedelta(days=100),
                            not_after=now - datetime.timedelta(days=10))
    server = tls_server(expired)
    fake_kube.put_secret(NS, 'gw-tls', expired)
    result = run_module(wait_for_certificate.main, _args(
        secret='gw-tls', namespace=NS, served=_served(server, ca_bundle), timeout=0.5, **fake_kube.auth_args()))
    assert result.failed
    assert 'certificate verify failed: certificate has expired' in result['msg']
    assert 'the leaf expired on' in result['msg']
    assert result['layers_passed'] == []
    assert result['days_remaining'] < 0
    _assert_no_key_material(result, expired)


def test_wrong_san_fails(test_ca, ca_bundle, tls_server, fake_kube, run_module):
    wrong = test_ca.issue('other.mesh.example')
    server = tls_server(wrong)
    fake_kube.put_secret(NS, 'gw-tls', wrong)
    result = run_module(wait_for_certificate.main, _args(
        secret='gw-tls', namespace=NS, served=_served(server, ca_bundle), timeout=0.5, **fake_kube.auth_args()))
    assert result.failed
    assert "Hostname mismatch, certificate is not valid for '%s'" % HOST in result['msg']
    assert 'the leaf does not cover %s (SANs: other.mesh.example)' % HOST in result['msg']
    assert result['layers']['served']['certificate']['sans'] == ['other.mesh.example']


def test_wildcard_certificate_covers_one_label(test_ca, ca_bundle, tls_server, run_module):
    wildcard = test_ca.issue('*.mesh.example')
    server = tls_server(wildcard)
    result = run_module(wait_for_certificate.main, _args(served=_served(server, ca_bundle)))
    assert not result.failed, result['msg']
    result = run_module(wait_for_certificate.main, _args(
        served=_served(server, ca_bundle, host='a.b.mesh.example'), timeout=0.3))
    assert result.failed
    assert 'Hostname mismatch' in result['msg']


def test_self_signed_certificate_fails_against_ca_bundle(test_ca, ca_bundle, tls_server, run_module):
    self_signed = test_ca.issue(HOST, self_signed=True)
    server = tls_server(self_signed)
    result = run_module(wait_for_certificate.main, _args(served=_served(server, ca_bundle), timeout=0.5))
    assert result.failed
    assert 'certificate verify failed: self-signed certificate' in result['msg']
    assert result['layers']['served']['verified'] is False
    # The certificate is still reported, for diagnosis.
    assert result['issuer'] == 'CN=%s' % HOST


def test_served_certificate_differs_from_secret(test_ca, ca_bundle, tls_server, fake_kube, run_module):
    served = test_ca.issue(HOST)
    stored = test_ca.issue(HOST)
    server = tls_server(served)
    fake_kube.put_secret(NS, 'gw-tls', stored)
    result = run_module(wait_for_certificate.main, _args(
        secret='gw-tls', namespace=NS, served=_served(server, ca_bundle), timeout=0.5, **fake_kube.auth_args()))
    assert result.failed
    assert 'is not the one in the Secret' in result['msg']
    assert 'a stale or default certificate is served' in result['msg']
    assert result['layers_passed'] == ['secret']
    assert result['layers']['served']['fingerprint_matches'] is False
    assert result['layers']['served']['verified'] is True


def test_certificate_replaced_mid_wait(test_ca, ca_bundle, tls_server, fake_kube, run_module, run_later):
    old = test_ca.issue(HOST)
    new = test_ca.issue(HOST)
    server = tls_server(old)
    fake_kube.put_secret(NS, 'gw-tls', new)
    run_later(1.5, server.serve, new)
    start = time.monotonic()
    result = run_module(wait_for_certificate.main, _args(
        secret='gw-tls', namespace=NS, served=_served(server, ca_bundle), timeout=8, **fake_kube.auth_args()))
    took = time.monotonic() - start
    assert not result.failed, result['msg']
    assert result['attempts'] > 1
    assert 1.4 < took < 4
    assert result['fingerprint'].replace(':', '').lower() == new.fingerprint


def test_min_days_remaining_and_issuer_expectation(test_ca, staging_ca, ca_bundle, tls_server, fake_kube,
                                                   run_module):
    short = test_ca.issue(HOST, days_valid=10)
    fake_kube.put_secret(NS, 'short', short)
    result = run_module(wait_for_certificate.main, _args(
        secret='short', namespace=NS, min_days_remaining=30, timeout=0.3, **fake_kube.auth_args()))
    assert result.failed
    assert 'days left, less than min_days_remaining 30' in result['msg']

    staging = staging_ca.issue(HOST)
    fake_kube.put_secret(NS, 'staging', staging)
    result = run_module(wait_for_certificate.main, _args(
        secret='staging', namespace=NS, dns_names=[HOST], issuer={'organization': 'Test Encrypt'}, timeout=0.3,
        **fake_kube.auth_args()))
    assert result.failed
    assert "issuer O is '(STAGING) Test Encrypt', expected 'Test Encrypt'" in result['msg']


def test_secret_key_mismatch_broken_chain_and_missing_key(test_ca, fake_kube, run_module):
    one = test_ca.issue(HOST)
    two = test_ca.issue(HOST)
    fake_kube.put_secret(NS, 'mismatch', cert_pem=one.chain_pem, key_pem=two.key_pem)
    fake_kube.put_secret(NS, 'reversed', cert_pem=one.chain_pem[len(one.cert_pem):] + one.cert_pem,
                         key_pem=one.key_pem)
    fake_kube.put_secret(NS, 'nokey', cert_pem=one.chain_pem, key_pem=b'', secret_type='Opaque')
    expectations = {
        'mismatch': 'the private key in tls.key does not match the leaf certificate',
        'reversed': 'chain is out of order or broken',
        'nokey': 'it has no tls.key',
    }
    for name, message in expectations.items():
        result = run_module(wait_for_certificate.main, _args(
            secret=name, namespace=NS, timeout=0, **fake_kube.auth_args()))
        assert result.failed, name
        assert message in result['msg'], (name, result['msg'])
        _assert_no_key_material(result, one, two)
    assert 'type is Opaque, not kubernetes.io/tls' in result['msg']


def test_check_mode_and_served_only(test_ca, ca_bundle, tls_server, run_module):
    server = tls_server(test_ca.issue(HOST))
    result = run_module(wait_for_certificate.main, _args(served=_served(server, ca_bundle)), check_mode=True)
    assert not result.failed, result['msg']
    assert result['changed'] is False
    assert result['layers_checked'] == ['served']
    assert result['layers']['served']['fingerprint_matches'] is None


def test_nothing_listening_is_retried_until_timeout(loopback_net, ca_bundle, run_module):
    start = time.monotonic()
    result = run_module(wait_for_certificate.main, _args(
        served={'host': HOST, 'port': 9, 'address': loopback_net + '21', 'ca_path': ca_bundle}, timeout=1))
    took = time.monotonic() - start
    assert result.failed
    assert 1 <= took < 2
    assert 'cannot connect: Connection refused' in result['msg']
    assert result['attempts'] > 1


# ---------------------------------------------------------------------------
# Resource layer (cert-manager Certificate) through the fake API
# ---------------------------------------------------------------------------

def _issuance_objects(fake_kube):
    fake_kube.put('apis/cert-manager.io/v1', 'certificaterequests', NS, {
        'metadata': {'name': 'gw-cert-1', 'uid': 'cr-1',
                     'annotations': {'cert-manager.io/certificate-revision': '1'},
                     'ownerReferences': [{'kind': 'Certificate', 'uid': 'uid-1', 'name': 'gw-cert'}]},
        'status': {'conditions': [
            {'type': 'Approved', 'status': 'True', 'reason': 'cert-manager.io'},
            {'type': 'Ready', 'status': 'False', 'reason': 'Pending',
             'message': 'Waiting on certificate issuance from order istio-system/gw-cert-1-42: "pending"'}]},
    })
    fake_kube.put('apis/acme.cert-manager.io/v1', 'orders', NS, {
        'metadata': {'name': 'gw-cert-1-42', 'uid': 'order-1',
                     'ownerReferences': [{'kind': 'CertificateRequest', 'uid': 'cr-1', 'name': 'gw-cert-1'}]},
        'status': {'state': 'pending'},
    })
    fake_kube.put('apis/acme.cert-manager.io/v1', 'challenges', NS, {
        'metadata': {'name': 'gw-cert-1-42-7', 'uid': 'ch-1',
                     'ownerReferences': [{'kind': 'Order', 'uid': 'order-1', 'name': 'gw-cert-1-42'}]},
        'spec': {'dnsName': HOST, 'type': 'HTTP-01'},
        'status': {'state': 'pending', 'reason': 'Waiting for HTTP-01 challenge propagation'},
    })


def test_resource_not_ready_then_ready(test_ca, fake_kube, run_module, run_later):
    good = test_ca.issue(HOST)
    fake_kube.put_certificate(NS, 'gw-cert', 'gw-tls', [HOST], ready=False, reason='Issuing',
                              message='Issuing certificate as Secret does not exist')
    _issuance_objects(fake_kube)
    result = run_module(wait_for_certificate.main, _args(
        certificate='gw-cert', namespace=NS, timeout=0.5, **fake_kube.auth_args()))
    assert result.failed
    msg = result['msg']
    assert 'Certificate istio-system/gw-cert is not ready: Ready=False (Issuing: Issuing certificate as ' \
           'Secret does not exist)' in msg
    assert 'latest CertificateRequest gw-cert-1: Approved=True (cert-manager.io); Ready=False (Pending: ' in msg
    assert 'Order gw-cert-1-42: state pending' in msg
    assert 'Challenge gw-cert-1-42-7 (%s, HTTP-01): state pending (Waiting for HTTP-01 challenge propagation)' % (
        HOST) in msg

    def issue():
        fake_kube.put_secret(NS, 'gw-tls', good)
        fake_kube.put_certificate(NS, 'gw-cert', 'gw-tls', [HOST], ready=True,
                                  not_after=good.cert.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ'))

    run_later(1.0, issue)
    result = run_module(wait_for_certificate.main, _args(
        certificate='gw-cert', secret='gw-tls', namespace=NS, timeout=6, **fake_kube.auth_args()))
    assert not result.failed, result['msg']
    assert result['layers_passed'] == ['resource', 'secret']
    assert result['dns_names'] == [HOST]
    assert result['attempts'] > 1
    assert result['layers']['resource']['ready'] is True


def test_resource_ready_but_secret_missing(fake_kube, run_module):
    fake_kube.put_certificate(NS, 'gw-cert', 'gw-tls', [HOST], ready=True, not_after='2030-01-01T00:00:00Z')
    result = run_module(wait_for_certificate.main, _args(
        certificate='gw-cert', secret='gw-tls', namespace=NS, timeout=0.5, **fake_kube.auth_args()))
    assert result.failed
    assert 'secret: Secret istio-system/gw-tls not found' in result['msg']
    assert result['layers_passed'] == ['resource']
    assert result['not_after'] == '2030-01-01T00:00:00Z'


def test_stale_ready_condition_is_not_ready(fake_kube, run_module):
    fake_kube.put_certificate(NS, 'gw-cert', 'gw-tls', [HOST], ready=True, not_after='2030-01-01T00:00:00Z',
                              generation=2)
    fake_kube.objects[('apis/cert-manager.io/v1', 'certificates', NS, 'gw-cert')]['status']['conditions'][0][
        'observedGeneration'] = 1
    result = run_module(wait_for_certificate.main, _args(
        certificate='gw-cert', namespace=NS, timeout=0, **fake_kube.auth_args()))
    assert result.failed
    assert 'Ready=True is for generation 1, the spec is at generation 2' in result['msg']


def test_fatal_errors_end_the_wait_at_once(fake_kube, run_module):
    fake_kube.put_certificate(NS, 'gw-cert', 'other-secret', [HOST], ready=True, not_after='2030-01-01T00:00:00Z')
    start = time.monotonic()
    result = run_module(wait_for_certificate.main, _args(
        certificate='gw-cert', secret='gw-tls', namespace=NS, timeout=30, **fake_kube.auth_args()))
    assert result.failed
    assert 'Certificate istio-system/gw-cert stores its certificate in Secret other-secret, not in gw-tls' in \
        result['msg']
    auth = fake_kube.auth_args()
    auth['api_key'] = 'wrong-token'
    result = run_module(wait_for_certificate.main, _args(
        certificate='gw-cert', namespace=NS, timeout=30, **auth))
    assert result.failed
    assert 'Failed at once' in result['msg']
    assert 'HTTP 401 Unauthorized' in result['msg']
    assert 'wrong-token' not in json.dumps(result)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize('args, message', [
    ({}, 'no layer selected: give certificate'),
    ({'certificate': 'gw-cert'}, "missing parameter(s) required by 'certificate': namespace"),
    ({'secret': 'gw-tls'}, "missing parameter(s) required by 'secret': namespace"),
    ({'served': {'port': 443}}, 'missing required arguments: host found in served'),
    ({'served': {'host': HOST, 'port': 70000}}, 'served.port 70000 is out of range'),
    ({'served': {'host': HOST}, 'issuer': {'common_name': '(unclosed'}},
     'issuer.common_name is not a valid regular expression'),
    ({'served': {'host': HOST}, 'min_days_remaining': -1}, 'min_days_remaining must not be negative'),
    # The path itself is masked in a module's output: kubeconfig is no_log (it may be a dict with credentials).
    ({'certificate': 'x', 'namespace': NS, 'kubeconfig': '/nonexistent/kubeconfig'},
     "the kubeconfig file '********' does not exist (from the kubeconfig option)"),
])
def test_bad_input_is_rejected(run_module, args, message):
    result = run_module(wait_for_certificate.main, _args(**args))
    assert result.failed
    assert message in result['msg']


def test_missing_kubernetes_library_is_reported(monkeypatch, run_module):
    from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s

    monkeypatch.setattr(_k8s, 'import_kubernetes', lambda: 'Traceback: No module named kubernetes')
    result = run_module(wait_for_certificate.main, _args(secret='gw-tls', namespace=NS))
    assert result.failed
    assert 'Failed to import the required Python library (kubernetes)' in result['msg']


def test_unreachable_api_server_is_retried_until_timeout(loopback_net, run_module):
    start = time.monotonic()
    result = run_module(wait_for_certificate.main, _args(
        secret='gw-tls', namespace=NS, host='http://%s31:9' % loopback_net, api_key='x', timeout=1))
    assert result.failed
    assert 1 <= time.monotonic() - start < 3
    assert 'Timed out after' in result['msg']
    assert 'Kubernetes API unreachable' in result['msg']
    assert result['attempts'] > 1
