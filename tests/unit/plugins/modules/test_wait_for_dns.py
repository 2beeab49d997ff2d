# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wait_for_dns against real knotd / dnsmasq servers on loopback."""

from __future__ import annotations

import time

import pytest

from ansible_collections.servicemesh.istio.plugins.modules import wait_for_dns

NAME = 'istio.mesh.example'


def _args(lab, **kwargs):
    args = {
        'name': NAME,
        'type': 'A',
        'values': ['203.0.113.9'],
        'start_servers': lab.start_servers(),
        'port': lab.port,
        'timeout': 4,
        'query_timeout': 1,
        'initial_sleep': 0.2,
        'max_sleep': 0.5,
    }
    args.update(kwargs)
    return args


def test_record_appears_later_and_module_waits(dns_lab, run_module, run_later):
    parent, ns1, ns2 = dns_lab.start_tree('')

    def publish():
        for server in (ns1, ns2):
            server.set_zone('mesh.example.', dns_lab.child_zone(
                'istio IN A 203.0.113.9', addrs={'ns1': dns_lab.ns1_addr, 'ns2': dns_lab.ns2_addr}))

    run_later(2.0, publish)
    start = time.monotonic()
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=10))
    took = time.monotonic() - start
    assert not result.failed, result['msg']
    assert result['changed'] is False
    assert 2.0 <= took < 6, took
    assert result['attempts'] > 1
    assert result['elapsed'] >= 1.9
    assert result['zone'] == 'mesh.example'
    assert result['nameservers'] == ['ns1.mesh.example', 'ns2.mesh.example']
    assert result['delegation_path'] == ['mesh.example']
    servers = {(s['server'], s['address']) for s in result['servers']}
    assert servers == {('ns1.mesh.example', dns_lab.ns1_addr), ('ns2.mesh.example', dns_lab.ns2_addr)}
    for answer in result['servers']:
        assert answer['status'] == 'ok'
        assert answer['values'] == ['203.0.113.9']
        assert answer['ttl'] == 300
        assert answer['authoritative'] is True
        assert answer['port'] == dns_lab.port


def test_wrong_ip_fails_with_expected_versus_answers(dns_lab, run_module):
    dns_lab.start_tree('istio IN A 198.51.100.4', 'istio IN A 198.51.100.4')
    start = time.monotonic()
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=2))
    took = time.monotonic() - start
    assert result.failed
    assert took < 3.0
    port = dns_lab.port
    assert result['msg'].startswith('Timed out after 2.')
    assert ('istio.mesh.example A: 203.0.113.9 expected, ns1.mesh.example (%s:%d) says 198.51.100.4, '
            'ns2.mesh.example (%s:%d) says 198.51.100.4' % (dns_lab.ns1_addr, port, dns_lab.ns2_addr, port)
            ) in result['msg']
    assert {s['status'] for s in result['servers']} == {'mismatch'}


def test_disagreeing_nameservers_fail_in_mode_all_and_pass_in_mode_any(dns_lab, run_module):
    dns_lab.start_tree('istio IN A 203.0.113.9', '')
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=1.5))
    assert result.failed
    port = dns_lab.port
    assert ('203.0.113.9 expected, ns1.mesh.example (%s:%d) says 203.0.113.9, '
            'ns2.mesh.example (%s:%d) NXDOMAIN' % (dns_lab.ns1_addr, port, dns_lab.ns2_addr, port)) in result['msg']
    statuses = {s['server']: s['status'] for s in result['servers']}
    assert statuses == {'ns1.mesh.example': 'ok', 'ns2.mesh.example': 'nxdomain'}

    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=1.5, mode='any'))
    assert not result.failed, result['msg']
    assert result['attempts'] == 1


def test_nxdomain_fails_fast_with_its_own_message(dns_lab, run_module):
    dns_lab.start_tree('')
    start = time.monotonic()
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=30, fail_on=['nxdomain']))
    took = time.monotonic() - start
    assert result.failed
    assert took < 1.5, took
    assert result['attempts'] == 1
    assert result['msg'].startswith('Failed at once (fail_on: nxdomain)')
    assert 'ns1.mesh.example (%s:%d) NXDOMAIN' % (dns_lab.ns1_addr, dns_lab.port) in result['msg']


def test_nodata_has_its_own_message(dns_lab, run_module):
    dns_lab.start_tree('istio IN AAAA 2001:db8::9')
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=0.5, fail_on=['nodata']))
    assert result.failed
    assert 'no A record (NODATA)' in result['msg']


def test_unreachable_nameserver_fails_fast_with_its_own_message(dns_lab, run_module):
    # The parent delegates to ns1 (running) and ns3 (an address where nothing listens).
    dns_lab.knot('parent', dns_lab.parent_addr, {'example.': dns_lab.parent_zone(delegate_to=('ns1', 'ns3'))})
    dns_lab.knot('ns1', dns_lab.ns1_addr, {'mesh.example.': dns_lab.child_zone(
        'istio IN A 203.0.113.9', nameservers=('ns1', 'ns3'),
        addrs={'ns1': dns_lab.ns1_addr, 'ns3': dns_lab.unused_addr})})
    start = time.monotonic()
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=30, fail_on=['unreachable']))
    took = time.monotonic() - start
    assert result.failed
    assert took < 1.5, took
    assert result['msg'].startswith('Failed at once (fail_on: unreachable)')
    assert 'ns3.mesh.example (%s:%d) unreachable (Connection refused)' % (
        dns_lab.unused_addr, dns_lab.port) in result['msg']
    statuses = {s['server']: s['status'] for s in result['servers']}
    assert statuses == {'ns1.mesh.example': 'ok', 'ns3.mesh.example': 'unreachable'}


def test_unreachable_start_server_reports_the_walk(dns_lab, run_module):
    result = run_module(wait_for_dns.main, _args(
        dns_lab, start_servers=[{'host': dns_lab.unused_addr, 'port': dns_lab.port}],
        fail_on=['unreachable'], timeout=30))
    assert result.failed
    assert 'delegation walk failed: no server answered istio.mesh.example NS: %s:%d unreachable' % (
        dns_lab.unused_addr, dns_lab.port) in result['msg']


def test_timeout_is_honoured_within_a_second(dns_lab, run_module):
    dns_lab.start_tree('')
    for timeout in (1.0, 2.5):
        start = time.monotonic()
        result = run_module(wait_for_dns.main, _args(dns_lab, timeout=timeout, max_sleep=2))
        took = time.monotonic() - start
        assert result.failed
        assert timeout <= took < timeout + 1.0, (timeout, took)
        assert 'Timed out after' in result['msg']
        assert 'NXDOMAIN' in result['msg']


def test_resolvers_only_with_dnsmasq(dns_lab, run_module):
    dns_lab.dnsmasq([(NAME, '203.0.113.9'), ('other.mesh.example', '203.0.113.10')])
    resolver = {'host': dns_lab.resolver_addr, 'port': dns_lab.port}
    result = run_module(wait_for_dns.main, _args(
        dns_lab, authoritative=False, resolvers=[resolver], start_servers=None))
    assert not result.failed, result['msg']
    assert result['servers'][0]['source'] == 'resolver'
    assert result['servers'][0]['values'] == ['203.0.113.9']
    assert 'zone' not in result

    result = run_module(wait_for_dns.main, _args(
        dns_lab, authoritative=False, resolvers=[resolver], values=['203.0.113.9', '203.0.113.11'],
        match='any', timeout=0.5))
    assert not result.failed, result['msg']
    result = run_module(wait_for_dns.main, _args(
        dns_lab, authoritative=False, resolvers=[resolver], values=['203.0.113.9', '203.0.113.11'],
        match='contains', timeout=0.5))
    assert result.failed
    assert 'at least 203.0.113.11 and 203.0.113.9 expected, %s:%d says 203.0.113.9' % (
        dns_lab.resolver_addr, dns_lab.port) in result['msg']


def _forwarding_resolver(dns_lab):
    """dnsmasq forwarding mesh.example to ns1, as a corporate resolver forwards
    an internal zone; it knows nothing else (no root servers are reachable)."""
    dns_lab.dnsmasq([], forward={'mesh.example': (dns_lab.ns1_addr, dns_lab.port)})
    return [{'host': dns_lab.resolver_addr, 'port': dns_lab.port}]


def test_nameservers_found_through_the_resolver_are_asked_directly(dns_lab, run_module):
    dns_lab.start_tree('istio IN A 203.0.113.9')
    discovery = _forwarding_resolver(dns_lab)
    result = run_module(wait_for_dns.main, _args(dns_lab, start_servers=None, discovery_resolvers=discovery))
    assert not result.failed, result['msg']
    assert result['zone'] == 'mesh.example' and result['delegation_path'] == ['mesh.example']
    assert result['nameservers'] == ['ns1.mesh.example', 'ns2.mesh.example']
    # The record is asked of each nameserver itself, not of the resolver.
    assert sorted((s['server'], s['address'], s['source']) for s in result['servers']) == [
        ('ns1.mesh.example', dns_lab.ns1_addr, 'authoritative'),
        ('ns2.mesh.example', dns_lab.ns2_addr, 'authoritative')]


def test_a_nameserver_behind_the_resolver_that_disagrees_is_named(dns_lab, run_module):
    # The resolver forwards to ns1, which has the record; ns2 lags behind.
    dns_lab.start_tree('istio IN A 203.0.113.9', ns2_records='istio IN A 198.51.100.4')
    discovery = _forwarding_resolver(dns_lab)
    result = run_module(wait_for_dns.main, _args(dns_lab, start_servers=None, discovery_resolvers=discovery,
                                                 timeout=0.5))
    assert result.failed
    assert 'ns2.mesh.example (%s:%d) says 198.51.100.4' % (dns_lab.ns2_addr, dns_lab.port) in result['msg']
    assert 'nameserver discovery failed' not in result['msg']


def test_a_resolver_that_cannot_be_reached_fails_the_discovery_with_its_name(dns_lab, run_module):
    unreachable = [{'host': dns_lab.unused_addr, 'port': dns_lab.port}]
    result = run_module(wait_for_dns.main, _args(dns_lab, start_servers=None, discovery_resolvers=unreachable,
                                                 fail_on=['unreachable'], timeout=30))
    assert result.failed
    assert 'nameserver discovery failed: no resolver answered istio.mesh.example NS: %s:%d unreachable' % (
        dns_lab.unused_addr, dns_lab.port) in result['msg']


def test_the_hosts_resolvers_come_from_resolv_conf(tmp_path):
    from ansible_collections.servicemesh.istio.plugins.module_utils import _dns

    conf = tmp_path / 'resolv.conf'
    conf.write_text('# a comment\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0 ; link-local\n'
                    'nameserver not-an-address\noptions ndots:2\n')
    assert [(s.address, s.port) for s in _dns.configured_resolvers(str(conf))] == [('192.0.2.53', 53), ('fe80::1', 53)]
    assert _dns.configured_resolvers(str(tmp_path / 'missing')) == []


def test_without_any_resolver_the_discovery_says_what_to_give(monkeypatch, run_module):
    from ansible_collections.servicemesh.istio.plugins.module_utils import _dns

    monkeypatch.setattr(_dns, 'configured_resolvers', lambda: [])
    result = run_module(wait_for_dns.main, {'name': NAME, 'values': ['203.0.113.9'], 'timeout': 0})
    assert result.failed and 'servers' not in result
    assert 'this host has no resolver configured' in result['msg'] and 'nameserver_discovery=walk' in result['msg']


def test_authoritative_and_resolver_together(dns_lab, run_module):
    dns_lab.start_tree('istio IN A 203.0.113.9')
    dns_lab.dnsmasq([(NAME, '198.51.100.4')])
    resolver = {'host': dns_lab.resolver_addr, 'port': dns_lab.port}
    result = run_module(wait_for_dns.main, _args(dns_lab, resolvers=[resolver], timeout=0.5))
    assert result.failed
    assert '%s:%d says 198.51.100.4' % (dns_lab.resolver_addr, dns_lab.port) in result['msg']
    result = run_module(wait_for_dns.main, _args(dns_lab, resolvers=[resolver], mode='any', timeout=0.5))
    assert not result.failed


def test_cname_and_check_mode(dns_lab, run_module):
    dns_lab.start_tree('www IN CNAME istio\nistio IN A 203.0.113.9')
    result = run_module(wait_for_dns.main, _args(
        dns_lab, name='WWW.mesh.example.', type='CNAME', values=['istio.mesh.example.']), check_mode=True)
    assert not result.failed, result['msg']
    assert result['changed'] is False
    assert result['name'] == 'www.mesh.example'
    assert result['values'] == ['istio.mesh.example']
    # An A query for the alias follows the CNAME inside the answer.
    result = run_module(wait_for_dns.main, _args(dns_lab, name='www.mesh.example'))
    assert not result.failed, result['msg']
    assert result['servers'][0]['cname_chain'] == ['istio.mesh.example']


def test_servfail_and_refused_have_their_own_messages(dns_lab, run_module):
    # ns1 is not authoritative for mesh.example (it serves another zone): knot answers REFUSED.
    dns_lab.knot('parent', dns_lab.parent_addr, {'example.': dns_lab.parent_zone()})
    dns_lab.knot('ns1', dns_lab.ns1_addr, {'other.example.': dns_lab.child_zone('')})
    dns_lab.knot('ns2', dns_lab.ns2_addr, {'mesh.example.': dns_lab.child_zone(
        'istio IN A 203.0.113.9', addrs={'ns1': dns_lab.ns1_addr, 'ns2': dns_lab.ns2_addr})})
    result = run_module(wait_for_dns.main, _args(dns_lab, timeout=30, fail_on=['refused']))
    assert result.failed
    assert 'ns1.mesh.example (%s:%d) REFUSED' % (dns_lab.ns1_addr, dns_lab.port) in result['msg']
    assert result['attempts'] == 1


@pytest.mark.parametrize('args, message', [
    ({'name': 'istio..example.com'}, 'has an empty label'),
    ({'name': 'ist io.example.com'}, 'may only hold letters, digits'),
    ({'name': 'x' * 64 + '.example.com'}, 'longer than 63 characters'),
    ({'type': 'MX'}, 'value of type must be one of: A, AAAA, CNAME, got: MX'),
    ({'values': ['not-an-ip']}, "'not-an-ip' is not an IPv4 address"),
    ({'type': 'AAAA', 'values': ['203.0.113.9']}, 'is not an IPv6 address'),
    ({'values': []}, 'values must hold at least one expected value'),
    ({'authoritative': False}, 'authoritative is False but all of the following are missing: resolvers'),
    ({'resolvers': [{'host': 'dns.google'}]}, "resolvers host 'dns.google' is not an IP address"),
    ({'max_sleep': 0.1, 'initial_sleep': 1}, 'max_sleep (0.1) must not be smaller than initial_sleep (1'),
    ({'fail_on': ['bogus']}, 'value of fail_on must be one or more of'),
    ({'nameserver_discovery': 'resolver'}, 'with nameserver_discovery=resolver give discovery_resolvers instead'),
    ({'nameserver_discovery': 'bogus'}, 'value of nameserver_discovery must be one of'),
])
def test_bad_input_is_rejected_before_any_query(run_module, args, message):
    base = {'name': NAME, 'values': ['203.0.113.9'],
            # Any query would go to this address, where nothing listens: no real DNS traffic.
            'start_servers': [{'host': '127.0.0.1', 'port': 9}], 'timeout': 0}
    base.update(args)
    result = run_module(wait_for_dns.main, base)
    assert result.failed
    assert message in result['msg']
    assert 'servers' not in result


def test_missing_dnspython_is_reported(monkeypatch, run_module):
    from ansible_collections.servicemesh.istio.plugins.module_utils import _dns

    monkeypatch.setattr(_dns, 'HAS_DNSPYTHON', False)
    monkeypatch.setattr(_dns, 'DNSPYTHON_IMPORT_ERROR', 'Traceback: No module named dns')
    result = run_module(wait_for_dns.main, {'name': NAME, 'values': ['203.0.113.9'], 'timeout': 0,
                                            'start_servers': [{'host': '127.0.0.1', 'port': 9}]})
    assert result.failed
    assert 'Failed to import the required Python library (dnspython)' in result['msg']
