# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _dns: names, values, matching, messages and the delegation
walk (driven by scripted in-memory nameservers, no network)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils import _dns


# ---------------------------------------------------------------------------
# Names and values
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('istio.example.com', 'istio.example.com'),
    ('Istio.Example.COM.', 'istio.example.com'),
    ('_acme-challenge.example.com', '_acme-challenge.example.com'),
    ('bücher.example', 'xn--bcher-kva.example'),
    ('a' * 63 + '.example', 'a' * 63 + '.example'),
])
def test_parse_hostname_accepts(text, expected):
    assert _dns.name_to_text(_dns.parse_hostname(text)) == expected


@pytest.mark.parametrize('text, message', [
    ('', 'must be a non-empty DNS name'),
    ('.', 'the root name is not a host name'),
    ('a..b', 'empty label'),
    ('.a.b', 'empty label'),
    ('a' * 64 + '.example', 'longer than 63 characters'),
    ('.'.join(['a' * 60] * 5), 'longer than 255 octets'),
    ('foo bar.example', 'may only hold letters'),
    ('-foo.example', 'may not start or end with "-"'),
    ('foo-.example', 'may not start or end with "-"'),
    ('*.example', 'may only hold letters'),
])
def test_parse_hostname_rejects(text, message):
    with pytest.raises(_dns.DnsInputError) as exc:
        _dns.parse_hostname(text)
    assert message in str(exc.value)


@pytest.mark.parametrize('rdtype, value, expected', [
    ('A', ' 203.0.113.9 ', '203.0.113.9'),
    ('AAAA', '2001:DB8:0:0::9', '2001:db8::9'),
    ('CNAME', 'Istio.Example.com.', 'istio.example.com'),
])
def test_normalize_value(rdtype, value, expected):
    assert _dns.normalize_value(rdtype, value) == expected


@pytest.mark.parametrize('rdtype, value, message', [
    ('A', '2001:db8::1', 'is not an IPv4 address'),
    ('A', '203.0.113.256', 'is not an IPv4 address'),
    ('AAAA', '203.0.113.9', 'is not an IPv6 address'),
    ('CNAME', 'a..b', 'empty label'),
    ('MX', '10 mail.example.com', 'unknown record type'),
])
def test_normalize_value_rejects(rdtype, value, message):
    with pytest.raises(_dns.DnsInputError) as exc:
        _dns.normalize_value(rdtype, value)
    assert message in str(exc.value)


@pytest.mark.parametrize('received, expected, match, result', [
    (['1.1.1.1'], ['1.1.1.1'], 'exact', True),
    (['1.1.1.1', '2.2.2.2'], ['1.1.1.1'], 'exact', False),
    (['1.1.1.1', '2.2.2.2'], ['2.2.2.2', '1.1.1.1'], 'exact', True),
    (['1.1.1.1', '2.2.2.2'], ['1.1.1.1'], 'contains', True),
    (['1.1.1.1'], ['1.1.1.1', '2.2.2.2'], 'contains', False),
    (['1.1.1.1'], ['1.1.1.1', '2.2.2.2'], 'any', True),
    (['3.3.3.3'], ['1.1.1.1', '2.2.2.2'], 'any', False),
    ([], ['1.1.1.1'], 'any', False),
    ([], ['1.1.1.1'], 'exact', False),
])
def test_values_match(received, expected, match, result):
    assert _dns.values_match(received, expected, match) is result


def test_describe_answers_wording():
    answers = [
        {'server': 'ns1.example.com', 'address': '192.0.2.1', 'port': 53, 'message': 'says 198.51.100.4'},
        {'server': 'ns2.example.com', 'address': '2001:db8::2', 'port': 53, 'message': 'NXDOMAIN'},
        {'server': '192.0.2.53', 'address': '192.0.2.53', 'port': 5353, 'message': 'no answer within 3s'},
    ]
    assert _dns.describe_answers('istio.example.com', 'A', ['203.0.113.9'], 'exact', answers) == (
        'istio.example.com A: 203.0.113.9 expected, ns1.example.com (192.0.2.1:53) says 198.51.100.4, '
        'ns2.example.com ([2001:db8::2]:53) NXDOMAIN, 192.0.2.53:5353 no answer within 3s')
    assert _dns.describe_expected(['1.1.1.1', '2.2.2.2'], 'any') == 'one of 1.1.1.1, 2.2.2.2 expected'


# ---------------------------------------------------------------------------
# Delegation walk with scripted nameservers
# ---------------------------------------------------------------------------

class Zone:
    """An in-memory authoritative zone: NS set, delegations, A records."""

    def __init__(self, name, ns, delegations=None, records=None):
        self.name = dns.name.from_text(name)
        self.ns = ns                          # {ns name: address or None}
        self.delegations = delegations or {}  # {child: {ns name: glue address or None}}
        self.records = records or {}          # {name: address}


class FakeNet:
    """``query`` answers like authoritative servers would, from Zone objects."""

    def __init__(self, servers):
        self.servers = servers  # {address: [Zone]}
        self.log = []

    def query(self, address, port, qname, rdtype, timeout, recursion=False):
        self.log.append((address, port, qname.to_text(), rdtype))
        response = self._answer(address, qname, rdtype)
        # Through the wire format, exactly like an answer from a real server.
        return dns.message.from_wire(response.to_wire())

    def _answer(self, address, qname, rdtype):
        zones = self.servers.get(address)
        if zones is None:
            raise _dns.QueryFailed('unreachable', 'unreachable (Connection refused)')
        if zones == 'servfail':
            msg = dns.message.make_response(dns.message.make_query(qname, rdtype))
            msg.set_rcode(dns.rcode.SERVFAIL)
            return msg
        rdtype = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else rdtype
        response = dns.message.make_response(dns.message.make_query(qname, rdtype))
        candidates = [z for z in zones if qname.is_subdomain(z.name)]
        if not candidates:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        zone = max(candidates, key=lambda z: len(z.name))
        for child, ns in zone.delegations.items():
            child_name = dns.name.from_text(child)
            if qname.is_subdomain(child_name):
                response.authority.append(dns.rrset.from_text_list(
                    child_name, 300, 'IN', 'NS', list(ns)))
                for ns_name, glue in ns.items():
                    if glue:
                        response.additional.append(dns.rrset.from_text(ns_name, 300, 'IN', 'A', glue))
                return response
        response.flags |= dns.flags.AA
        soa = dns.rrset.from_text(zone.name, 300, 'IN', 'SOA', 'ns. host. 1 2 3 4 5')
        if rdtype == dns.rdatatype.NS and qname == zone.name:
            response.answer.append(dns.rrset.from_text_list(zone.name, 300, 'IN', 'NS', list(zone.ns)))
            for ns_name, glue in zone.ns.items():
                if glue:
                    response.additional.append(dns.rrset.from_text(ns_name, 300, 'IN', 'A', glue))
            return response
        key = qname.to_text()
        if key in zone.records:
            if rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(qname, 300, 'IN', 'A', zone.records[key]))
            else:
                response.authority.append(soa)
            return response
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(soa)
        return response


def _server(address, port=53, label=None):
    return _dns.Server(address, port, label or address, 'start')


ROOT = '10.0.0.1'


def _tree():
    root = Zone('.', {'a.root.': ROOT}, delegations={
        'com.': {'a.gtld.com.': '10.0.1.1'},
        'net.': {'a.gtld.net.': '10.0.3.1'},
    })
    com = Zone('com.', {'a.gtld.com.': '10.0.1.1'}, delegations={
        'example.com.': {'ns1.example.com.': '10.0.2.1', 'ns2.example.com.': '10.0.2.2'},
        'noglue.com.': {'ns.dns-host.net.': None},
        'loop.com.': {'ns.loop.com.': '10.0.9.9'},
    })
    net = Zone('net.', {'a.gtld.net.': '10.0.3.1'}, delegations={
        'dns-host.net.': {'ns.dns-host.net.': '10.0.4.1'},
    })
    example = Zone('example.com.', {'ns1.example.com.': '10.0.2.1', 'ns3.example.com.': '10.0.2.3'},
                   records={'istio.example.com.': '203.0.113.9'})
    dns_host = Zone('dns-host.net.', {'ns.dns-host.net.': '10.0.4.1'},
                    records={'ns.dns-host.net.': '10.0.5.1'})
    noglue = Zone('noglue.com.', {'ns.dns-host.net.': None})
    return {
        ROOT: [root],
        '10.0.1.1': [com],
        '10.0.3.1': [net],
        '10.0.2.1': [example],
        '10.0.2.2': [example],
        '10.0.2.3': [example],
        '10.0.4.1': [dns_host],
        '10.0.5.1': [noglue],
        # A broken server that refers back up, to com.
        '10.0.9.9': [Zone('.', {'x.': None}, delegations={'com.': {'a.gtld.com.': '10.0.1.1'}})],
    }


@pytest.mark.parametrize('qname, zone, nameservers, addresses, path', [
    # Two referrals with glue; the zone's own NS set adds ns3 to the parent's ns1 + ns2.
    ('istio.example.com', 'example.com', ['ns1.example.com', 'ns2.example.com', 'ns3.example.com'],
     ['10.0.2.1', '10.0.2.2', '10.0.2.3'], ['com', 'example.com']),
    # A name that does not exist still has authoritative servers.
    ('missing.example.com', 'example.com', ['ns1.example.com', 'ns2.example.com', 'ns3.example.com'],
     ['10.0.2.1', '10.0.2.2', '10.0.2.3'], ['com', 'example.com']),
    # The zone apex itself.
    ('example.com', 'example.com', ['ns1.example.com', 'ns2.example.com', 'ns3.example.com'],
     ['10.0.2.1', '10.0.2.2', '10.0.2.3'], ['com', 'example.com']),
    # Out-of-bailiwick NS without glue: its address comes from a walk of its own.
    ('www.noglue.com', 'noglue.com', ['ns.dns-host.net'], ['10.0.5.1'], ['com', 'noglue.com']),
])
def test_walk_finds_authoritative_servers(qname, zone, nameservers, addresses, path):
    net = FakeNet(_tree())
    walker = _dns.DelegationWalker([_server(ROOT)], port=5353, query=net.query)
    result = walker.walk(dns.name.from_text(qname))
    assert _dns.name_to_text(result.zone) == zone
    assert result.nameservers == nameservers
    assert sorted(s.address for s in result.servers) == addresses
    assert {s.port for s in result.servers} == {5353}
    assert {s.source for s in result.servers} == {'authoritative'}
    assert result.path == path
    # The start server is asked on its own port, discovered servers on `port`.
    assert net.log[0][:2] == (ROOT, 53)
    assert all(port == (53 if address == ROOT else 5353) for address, port, q, t in net.log)


def test_walk_from_a_server_that_is_already_authoritative():
    net = FakeNet(_tree())
    walker = _dns.DelegationWalker([_server('10.0.2.1', 5300)], port=53, query=net.query)
    result = walker.walk(dns.name.from_text('istio.example.com'))
    assert _dns.name_to_text(result.zone) == 'example.com'
    # No delegation seen: the zone's own NS set.
    assert result.nameservers == ['ns1.example.com', 'ns3.example.com']
    assert result.path == ['example.com']


def test_walk_skips_unreachable_and_failing_start_servers():
    servers = _tree()
    servers['10.0.0.2'] = 'servfail'
    net = FakeNet(servers)
    walker = _dns.DelegationWalker([_server('10.0.0.9'), _server('10.0.0.2'), _server(ROOT)], query=net.query)
    result = walker.walk(dns.name.from_text('istio.example.com'))
    assert _dns.name_to_text(result.zone) == 'example.com'


@pytest.mark.parametrize('starts, qname, message, unreachable', [
    (['10.0.0.9'], 'istio.example.com', 'no server answered istio.example.com NS: 10.0.0.9:53 unreachable', True),
    (['10.0.0.2'], 'istio.example.com', 'no server answered istio.example.com NS: 10.0.0.2:53 SERVFAIL', False),
    ([ROOT], 'www.loop.com', 'which is not below it (referral loop)', False),
])
def test_walk_errors(starts, qname, message, unreachable):
    servers = _tree()
    servers['10.0.0.2'] = 'servfail'
    net = FakeNet(servers)
    walker = _dns.DelegationWalker([_server(a) for a in starts], query=net.query)
    with pytest.raises(_dns.WalkError) as exc:
        walker.walk(dns.name.from_text(qname))
    assert message in str(exc.value)
    assert exc.value.unreachable is unreachable


def test_walk_needs_a_start_server():
    with pytest.raises(ValueError):
        _dns.DelegationWalker([])


@pytest.mark.parametrize('address, status, message', [
    ('10.0.2.1', 'ok', 'says 203.0.113.9'),
    ('10.0.1.1', 'lame', 'not authoritative (lame delegation)'),
    ('10.0.4.1', 'refused', 'REFUSED'),
    ('10.0.0.2', 'servfail', 'SERVFAIL'),
    ('10.0.0.9', 'unreachable', 'unreachable (Connection refused)'),
])
def test_ask_server_classifies(address, status, message):
    servers = _tree()
    servers['10.0.0.2'] = 'servfail'
    net = FakeNet(servers)
    server = _dns.Server(address, 53, 'ns', 'authoritative')
    answer = _dns.ask_server(server, dns.name.from_text('istio.example.com'), 'A', ['203.0.113.9'], 'exact', 1,
                             query=net.query)
    assert answer['status'] == status
    assert answer['message'] == message
