# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _tls: SAN matching, certificate facts and checks."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils import _tls


@pytest.mark.parametrize('san, name, covered', [
    ('istio.example.com', 'istio.example.com', True),
    ('ISTIO.Example.com', 'istio.example.COM.', True),
    ('istio.example.com', 'www.example.com', False),
    ('*.example.com', 'istio.example.com', True),
    ('*.example.com', 'ISTIO.EXAMPLE.COM', True),
    ('*.example.com', 'example.com', False),
    ('*.example.com', 'a.b.example.com', False),
    ('*.example.com', 'istio.example.org', False),
    ('*.example.com', 'istioexample.com', False),
    ('*.example.com', '*.example.com', True),
    ('istio.example.com', '*.example.com', False),
    ('*.com', 'example.com', False),
    ('*.*.example.com', 'a.b.example.com', False),
    ('f*.example.com', 'foo.example.com', False),
    ('*', 'localhost', False),
    ('*.bücher.example', 'www.xn--bcher-kva.example', True),
    ('xn--bcher-kva.example', 'bücher.example', True),
    ('203.0.113.9', '203.0.113.9', True),
    ('*.0.113.9', '203.0.113.9', False),
    ('2001:db8::9', '2001:DB8:0::9', True),
    ('', 'example.com', False),
])
def test_san_covers(san, name, covered):
    assert _tls.san_covers(san, name) is covered


def test_uncovered_names():
    sans = ['*.example.com', 'example.com']
    assert _tls.uncovered_names(sans, ['example.com', 'a.example.com', 'a.b.example.com']) == ['a.b.example.com']
    assert _tls.uncovered_names(sans, []) == []


def test_certificate_facts_and_checks(test_ca, staging_ca):
    issued = test_ca.issue('istio.example.com', '*.example.com', days_valid=40)
    facts = _tls.certificate_facts(issued.cert)
    assert facts['subject'] == 'CN=istio.example.com'
    assert facts['sans'] == ['istio.example.com', '*.example.com']
    assert facts['issuer'] == 'CN=T1,O=Test Encrypt,C=US'
    assert facts['serial'] == format(issued.cert.serial_number, 'X')
    assert facts['fingerprint'].replace(':', '').lower() == issued.fingerprint
    assert 39.9 < facts['days_remaining'] <= 40
    assert set(facts) == {'subject', 'sans', 'issuer', 'serial', 'not_before', 'not_after', 'days_remaining',
                          'fingerprint'}

    assert _tls.validity_problems(issued.cert, 30) == []
    assert 'less than min_days_remaining 45' in _tls.validity_problems(issued.cert, 45)[0]
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=50)
    assert _tls.validity_problems(issued.cert, 0, now=future)[0].startswith('expired on ')
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    assert _tls.validity_problems(issued.cert, 0, now=past)[0].startswith('is not valid before ')

    assert _tls.issuer_problems(issued.cert, {'organization': 'Test Encrypt', 'common_name': 'T[0-9]+'}) == []
    assert _tls.issuer_problems(issued.cert, {'organization': 'Test'}) == [
        "issuer O is 'Test Encrypt', expected 'Test'"]
    staging = staging_ca.issue('istio.example.com')
    assert _tls.issuer_problems(staging.cert, {'organization': 'Test Encrypt'}) == [
        "issuer O is '(STAGING) Test Encrypt', expected 'Test Encrypt'"]
    assert _tls.issuer_problems(issued.cert, {'organizational_unit': 'x'}) == ["issuer OU is absent, expected 'x'"]


def test_chain_key_and_parsing(test_ca):
    one = test_ca.issue('a.example.com')
    two = test_ca.issue('b.example.com')
    chain = _tls.load_chain(one.chain_pem)
    assert len(chain) == 2
    assert _tls.chain_problems(chain) == []
    assert _tls.chain_problems(list(reversed(chain)))[0].startswith('chain is out of order or broken')
    assert _tls.chain_problems([one.cert, test_ca.root])  # leaf is not issued by the root directly
    key = _tls.load_private_key(one.key_pem)
    assert _tls.key_matches_certificate(key, one.cert)
    assert not _tls.key_matches_certificate(key, two.cert)
    with pytest.raises(_tls.CertificateError) as exc:
        _tls.load_chain(b'garbage')
    assert 'no PEM certificate found' in str(exc.value)
    with pytest.raises(_tls.CertificateError) as exc:
        _tls.load_private_key(one.key_pem[:60] + b'AAAA' + one.key_pem[64:])
    assert 'cannot be parsed' in str(exc.value)
    assert 'AAAA' not in str(exc.value)


def test_fetch_served_certificate_errors(loopback_net):
    result = _tls.fetch_served_certificate('istio.example.com', 9, loopback_net + '5', timeout=1)
    assert result.der is None
    assert result.error_kind == 'connect'
    assert result.error == 'cannot connect: Connection refused'
