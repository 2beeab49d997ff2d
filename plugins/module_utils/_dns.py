# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""DNS helpers for servicemesh.istio.wait_for_dns: name and value checks,
single queries with classified outcomes, and a delegation walker that finds
a zone's authoritative nameservers starting from configurable servers."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
import traceback

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
except ImportError:
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None


# IPv4 addresses of the root servers (a to m.root-servers.net), the default
# start of the delegation walk.
ROOT_SERVERS = [
    ('a.root-servers.net', '198.41.0.4'),
    ('b.root-servers.net', '170.247.170.2'),
    ('c.root-servers.net', '192.33.4.12'),
    ('d.root-servers.net', '199.7.91.13'),
    ('e.root-servers.net', '192.203.230.10'),
    ('f.root-servers.net', '192.5.5.241'),
    ('g.root-servers.net', '192.112.36.4'),
    ('h.root-servers.net', '198.97.190.53'),
    ('i.root-servers.net', '192.36.148.17'),
    ('j.root-servers.net', '192.58.128.30'),
    ('k.root-servers.net', '193.0.14.129'),
    ('l.root-servers.net', '199.7.83.42'),
    ('m.root-servers.net', '202.12.27.33'),
]

RECORD_TYPES = ('A', 'AAAA', 'CNAME')

_LABEL_RE = re.compile(r'^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$')

# Outcome of asking one server, from best to worst.
STATUS_OK = 'ok'
STATUS_MISMATCH = 'mismatch'
STATUS_NODATA = 'nodata'
STATUS_NXDOMAIN = 'nxdomain'
STATUS_SERVFAIL = 'servfail'
STATUS_REFUSED = 'refused'
STATUS_LAME = 'lame'
STATUS_ERROR = 'error'
STATUS_UNREACHABLE = 'unreachable'
STATUS_TIMEOUT = 'timeout'

# Statuses that fail_on can name, and the statuses each of them covers.
FAIL_ON_CHOICES = {
    'nxdomain': (STATUS_NXDOMAIN,),
    'nodata': (STATUS_NODATA,),
    'servfail': (STATUS_SERVFAIL,),
    'refused': (STATUS_REFUSED, STATUS_LAME),
    'unreachable': (STATUS_UNREACHABLE, STATUS_TIMEOUT),
    'mismatch': (STATUS_MISMATCH,),
}


class DnsInputError(ValueError):
    """Bad user input (malformed name, value that does not fit the type...)."""


class WalkError(Exception):
    """The delegation walk could not find the authoritative nameservers."""

    def __init__(self, message, unreachable=False):
        super(WalkError, self).__init__(message)
        self.unreachable = unreachable


class QueryFailed(Exception):
    """A query got no DNS answer at all: ``kind`` is 'unreachable' or 'timeout'."""

    def __init__(self, kind, message):
        super(QueryFailed, self).__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------
# Names and values
# --------------------------------------------------------------------------

def parse_hostname(text, what='name'):
    """Parse a host name (IDN allowed) into an absolute ``dns.name.Name``.

    Raises DnsInputError with a readable reason for malformed names: empty
    labels, labels over 63 octets, names over 255 octets, characters that
    are not letters, digits, hyphen or underscore, and labels that start or
    end with a hyphen.
    """
    if not isinstance(text, str) or not text.strip():
        raise DnsInputError('%s must be a non-empty DNS name' % what)
    text = text.strip()
    if text == '.':
        raise DnsInputError('%s %r: the root name is not a host name' % (what, text))
    try:
        name = dns.name.from_unicode(text)
    except dns.name.EmptyLabel:
        raise DnsInputError('%s %r is malformed: it has an empty label (two dots in a row, or a leading dot)' % (what, text))
    except dns.name.LabelTooLong:
        raise DnsInputError('%s %r is malformed: a label is longer than 63 characters' % (what, text))
    except dns.name.NameTooLong:
        raise DnsInputError('%s %r is malformed: it is longer than 255 octets' % (what, text))
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise DnsInputError('%s %r is malformed: %s' % (what, text, exc))
    for label in name.labels[:-1]:
        try:
            ascii_label = label.decode('ascii').lower()
        except UnicodeDecodeError:
            ascii_label = None
        if ascii_label is None or not _LABEL_RE.match(ascii_label):
            raise DnsInputError(
                '%s %r is malformed: label %r may only hold letters, digits, "-" and "_", '
                'and may not start or end with "-"' % (what, text, label.decode('ascii', 'backslashreplace')))
    return name


def name_to_text(name):
    """Lower-case text of a name without the trailing dot."""
    text = name.to_text().lower()
    return text[:-1] if text.endswith('.') and text != '.' else text


def normalize_value(rdtype, value):
    """Canonical text of an expected or received value of type A, AAAA or CNAME."""
    if rdtype == 'A':
        try:
            return str(ipaddress.IPv4Address(str(value).strip()))
        except ValueError:
            raise DnsInputError('value %r is not an IPv4 address (record type A)' % (value,))
    if rdtype == 'AAAA':
        try:
            return str(ipaddress.IPv6Address(str(value).strip()))
        except ValueError:
            raise DnsInputError('value %r is not an IPv6 address (record type AAAA)' % (value,))
    if rdtype == 'CNAME':
        return name_to_text(parse_hostname(str(value), what='CNAME target'))
    raise DnsInputError('unknown record type %r: use one of %s' % (rdtype, ', '.join(RECORD_TYPES)))


def parse_ip(text, what='server address'):
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise DnsInputError('%s %r is not an IP address' % (what, text))


def values_match(received, expected, match):
    """Compare sets of normalized values.

    ``exact``: the record set equals the expected set; ``contains``: every
    expected value is present (others allowed); ``any``: at least one expected
    value is present.
    """
    received = set(received)
    expected = set(expected)
    if not received:
        return False
    if match == 'exact':
        return received == expected
    if match == 'contains':
        return expected <= received
    if match == 'any':
        return bool(expected & received)
    raise ValueError('unknown match %r' % (match,))


# --------------------------------------------------------------------------
# Servers and queries
# --------------------------------------------------------------------------

class Server:
    """A nameserver to ask: ``label`` is its NS name (or its address)."""

    def __init__(self, address, port=53, label=None, source='resolver'):
        self.address = address
        self.port = int(port)
        self.label = label or address
        self.source = source

    def endpoint(self):
        if ':' in self.address:
            return '[%s]:%d' % (self.address, self.port)
        return '%s:%d' % (self.address, self.port)

    def display(self):
        if self.label != self.address:
            return '%s (%s)' % (self.label, self.endpoint())
        return self.endpoint()

    def key(self):
        return (self.address, self.port)

    def __repr__(self):
        return 'Server(%r, %r, %r, %r)' % (self.address, self.port, self.label, self.source)


def send_query(address, port, qname, rdtype, timeout, recursion=False):
    """Send one query over UDP (TCP when truncated); return the response.

    The UDP socket is connected so that an ICMP port-unreachable (nothing
    listening) is reported at once instead of waiting for the timeout.
    Raises QueryFailed('unreachable' | 'timeout', message).
    """
    query = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
    if not recursion:
        query.flags &= ~dns.flags.RD
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, port))
            response = dns.query.udp(query, address, timeout=timeout, port=port, sock=sock,
                                     ignore_unexpected=True, ignore_trailing=True)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, address, timeout=timeout, port=port)
    except dns.exception.Timeout:
        raise QueryFailed('timeout', 'no answer within %gs' % timeout)
    except OSError as exc:
        raise QueryFailed('unreachable', 'unreachable (%s)' % (exc.strerror or exc))
    except dns.exception.DNSException as exc:
        raise QueryFailed('unreachable', 'malformed response (%s)' % exc)
    return response


def _rrset_ttl_values(response, qname, rdtype):
    """Follow CNAMEs inside the answer section; return (values, ttl, cname_chain)."""
    want = dns.rdatatype.from_text(rdtype)
    current = qname
    chain = []
    for dummy in range(16):
        rrset = response.get_rrset(response.answer, current, dns.rdataclass.IN, want)
        if rrset is not None:
            if rdtype == 'CNAME':
                values = [name_to_text(rd.target) for rd in rrset]
            else:
                values = [str(ipaddress.ip_address(rd.address)) for rd in rrset]
            return sorted(values), rrset.ttl, chain
        if want == dns.rdatatype.CNAME:
            break
        cname = response.get_rrset(response.answer, current, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None:
            break
        current = cname[0].target
        chain.append(name_to_text(current))
    return [], None, chain


def ask_server(server, qname, rdtype, expected, match, timeout, query=send_query):
    """Ask one server for ``qname``/``rdtype`` and classify the outcome.

    Returns a dict with server, address, port, source, status, rcode, values,
    ttl, authoritative, cname_chain, query_time and message.
    """
    authoritative_source = server.source == 'authoritative'
    result = {
        'server': server.label,
        'address': server.address,
        'port': server.port,
        'source': server.source,
        'status': None,
        'rcode': None,
        'values': [],
        'ttl': None,
        'authoritative': False,
        'cname_chain': [],
        'query_time': None,
        'message': '',
    }
    start = time.monotonic()
    try:
        response = query(server.address, server.port, qname, rdtype, timeout, recursion=not authoritative_source)
    except QueryFailed as exc:
        result['query_time'] = round(time.monotonic() - start, 4)
        result['status'] = STATUS_TIMEOUT if exc.kind == 'timeout' else STATUS_UNREACHABLE
        result['message'] = str(exc)
        return result
    result['query_time'] = round(time.monotonic() - start, 4)
    rcode = response.rcode()
    result['rcode'] = dns.rcode.to_text(rcode)
    result['authoritative'] = bool(response.flags & dns.flags.AA)
    if rcode == dns.rcode.NXDOMAIN:
        result['status'] = STATUS_NXDOMAIN
        result['message'] = 'NXDOMAIN'
    elif rcode == dns.rcode.SERVFAIL:
        result['status'] = STATUS_SERVFAIL
        result['message'] = 'SERVFAIL'
    elif rcode == dns.rcode.REFUSED:
        result['status'] = STATUS_REFUSED
        result['message'] = 'REFUSED'
    elif rcode != dns.rcode.NOERROR:
        result['status'] = STATUS_ERROR
        result['message'] = 'error %s' % result['rcode']
    else:
        values, ttl, chain = _rrset_ttl_values(response, qname, rdtype)
        result['values'] = values
        result['ttl'] = ttl
        result['cname_chain'] = chain
        if authoritative_source and not result['authoritative']:
            result['status'] = STATUS_LAME
            result['message'] = 'not authoritative (lame delegation)'
        elif not values:
            result['status'] = STATUS_NODATA
            if chain:
                result['message'] = 'CNAME to %s, but no %s record (NODATA)' % (chain[-1], rdtype)
            else:
                result['message'] = 'no %s record (NODATA)' % rdtype
        else:
            ok = values_match(values, expected, match)
            result['status'] = STATUS_OK if ok else STATUS_MISMATCH
            result['message'] = 'says %s' % ' and '.join(values)
    return result


def describe_expected(expected, match):
    joined = ' and '.join(expected)
    if match == 'any':
        if len(expected) == 1:
            return '%s expected' % expected[0]
        return 'one of %s expected' % ', '.join(expected)
    if match == 'contains':
        return 'at least %s expected' % joined
    return '%s expected' % joined


def describe_answers(name, rdtype, expected, match, answers):
    """``istio.example.com A: 203.0.113.9 expected, ns1 says 198.51.100.4, ns2 NXDOMAIN``."""
    parts = ['%s %s: %s' % (name, rdtype, describe_expected(expected, match))]
    for answer in answers:
        label = answer['server']
        endpoint = answer['address'] if ':' not in answer['address'] else '[%s]' % answer['address']
        endpoint = '%s:%d' % (endpoint, answer['port'])
        who = label if label == answer['address'] else '%s (%s)' % (label, endpoint)
        if label == answer['address']:
            who = endpoint
        parts.append('%s %s' % (who, answer['message']))
    return ', '.join(parts)


# --------------------------------------------------------------------------
# Delegation walk
# --------------------------------------------------------------------------

def ask_in_turn(query, servers, qname, rdtype, timeout, recursion=False, who='server'):
    """Ask ``servers`` in turn until one answers NOERROR or NXDOMAIN; return
    ``(response, server)``, or raise WalkError naming what each one said
    (``unreachable`` when none could be reached)."""
    problems = []
    for server in servers:
        try:
            response = query(server.address, server.port, qname, rdtype, timeout, recursion=recursion)
        except QueryFailed as exc:
            problems.append((server, str(exc), True))
            continue
        rcode = response.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return response, server
        problems.append((server, dns.rcode.to_text(rcode), False))
    raise WalkError('no %s answered %s %s: %s' % (
        who, name_to_text(qname) or '.', rdtype if isinstance(rdtype, str) else dns.rdatatype.to_text(rdtype),
        ', '.join('%s %s' % (s.display(), why) for s, why, dummy in problems)),
        unreachable=bool(problems) and all(p[2] for p in problems))


class WalkResult:
    def __init__(self, zone, nameservers, servers, path):
        self.zone = zone                # dns.name.Name of the zone holding the name
        self.nameservers = nameservers  # sorted NS names (text)
        self.servers = servers          # [Server] one per (NS name, address)
        self.path = path                # zones visited, from the start to the zone


class DelegationWalker:
    """Find the authoritative nameservers of the zone that holds a name.

    The walk starts at ``start_servers`` (root servers by default), sends
    non-recursive NS queries for the name and follows referrals (NS records in
    the authority section, with glue A/AAAA records, or NS names resolved by
    a walk of their own) until a server answers authoritatively. The
    nameservers of the zone are the union of the parent's delegation and the
    zone's own apex NS records. Every discovered nameserver is asked on
    ``port``; start servers keep their own port.

    ``query(address, port, qname, rdtype, timeout, recursion)`` returns a
    ``dns.message.Message`` or raises QueryFailed; ``timeout()`` returns the
    per-query timeout (it lets the caller bound the walk by a deadline).
    """

    MAX_REFERRALS = 16
    MAX_NS_DEPTH = 3

    def __init__(self, start_servers, port=53, query=send_query, timeout=lambda: 3.0, ipv6=False):
        if not start_servers:
            raise ValueError('the delegation walk needs at least one start server')
        self.start_servers = list(start_servers)
        self.port = int(port)
        self.query = query
        self.timeout = timeout
        self.ipv6 = ipv6

    # -- helpers ---------------------------------------------------------
    def _ask_any(self, servers, qname, rdtype):
        """Ask servers in turn until one gives a usable answer."""
        return ask_in_turn(self.query, servers, qname, rdtype, self.timeout(), recursion=False)

    def _glue(self, response, ns_names):
        glue = {}
        types = [dns.rdatatype.A] + ([dns.rdatatype.AAAA] if self.ipv6 else [])
        for rrset in response.additional:
            if rrset.rdtype in types and rrset.name in ns_names:
                glue.setdefault(rrset.name, []).extend(str(rd.address) for rd in rrset)
        return glue

    def _resolve_ns_address(self, ns_name, depth):
        """Addresses of an NS name that came without glue, by a walk of its own."""
        if depth >= self.MAX_NS_DEPTH:
            raise WalkError('too many levels of nameservers without glue resolving %s' % name_to_text(ns_name))
        result = self._walk(ns_name, depth + 1)
        addresses = []
        types = ['A'] + (['AAAA'] if self.ipv6 else [])
        for rdtype in types:
            for server in result.servers:
                try:
                    response = self.query(server.address, server.port, ns_name, rdtype, self.timeout(), recursion=False)
                except QueryFailed:
                    continue
                if response.rcode() != dns.rcode.NOERROR:
                    continue
                values, dummy, dummy2 = _rrset_ttl_values(response, ns_name, rdtype)
                addresses.extend(values)
                break
        return addresses

    def _servers_for(self, ns_names, glue, depth):
        servers = []
        unresolved = []
        for ns_name in sorted(ns_names):
            addresses = glue.get(ns_name)
            if not addresses:
                try:
                    addresses = self._resolve_ns_address(ns_name, depth)
                except WalkError:
                    addresses = []
            if not addresses:
                unresolved.append(name_to_text(ns_name))
                continue
            for address in sorted(set(addresses)):
                servers.append(Server(address, self.port, name_to_text(ns_name), 'authoritative'))
        return servers, unresolved

    # -- walk ------------------------------------------------------------
    def walk(self, qname):
        return self._walk(qname, 0)

    def _walk(self, qname, depth):
        servers = self.start_servers
        zone = dns.name.root
        path = []
        delegation = None  # (NS names, glue) of the last referral
        for dummy in range(self.MAX_REFERRALS):
            response, answered_by = self._ask_any(servers, qname, dns.rdatatype.NS)
            referral = None
            if not (response.flags & dns.flags.AA) and not response.answer:
                for rrset in response.authority:
                    if rrset.rdtype == dns.rdatatype.NS and qname.is_subdomain(rrset.name):
                        referral = rrset
                        break
            if referral is not None:
                child = referral.name
                if child == zone or not child.is_subdomain(zone):
                    raise WalkError('%s gave a referral from %s to %s, which is not below it (referral loop)' % (
                        answered_by.display(), name_to_text(zone) or '.', name_to_text(child) or '.'))
                ns_names = set(rd.target for rd in referral)
                glue = self._glue(response, ns_names)
                next_servers, unresolved = self._servers_for(ns_names, glue, depth)
                if not next_servers:
                    raise WalkError('none of the nameservers of %s (%s) could be resolved to an address' % (
                        name_to_text(child), ', '.join(sorted(unresolved))))
                zone = child
                path.append(name_to_text(zone) or '.')
                delegation = (child, ns_names, glue)
                servers = next_servers
                continue
            if not (response.flags & dns.flags.AA):
                raise WalkError('%s answered %s neither with a referral nor authoritatively' % (
                    answered_by.display(), name_to_text(qname)))
            # Authoritative answer: find the zone apex and its NS set.
            apex_ns = None
            answer_ns = response.get_rrset(response.answer, qname, dns.rdataclass.IN, dns.rdatatype.NS)
            if answer_ns is not None:
                zone = qname
                apex_ns = answer_ns
            else:
                for rrset in response.authority:
                    if rrset.rdtype == dns.rdatatype.SOA:
                        zone = rrset.name
                        break
            if not path or path[-1] != (name_to_text(zone) or '.'):
                path.append(name_to_text(zone) or '.')
            extra_glue = self._glue(response, set(rd.target for rd in apex_ns) if apex_ns else set())
            if apex_ns is None:
                try:
                    apex_response = self.query(answered_by.address, answered_by.port, zone, dns.rdatatype.NS,
                                               self.timeout(), recursion=False)
                except QueryFailed:
                    apex_response = None
                if apex_response is not None and apex_response.rcode() == dns.rcode.NOERROR:
                    apex_ns = apex_response.get_rrset(apex_response.answer, zone, dns.rdataclass.IN, dns.rdatatype.NS)
                    if apex_ns is not None:
                        extra_glue = self._glue(apex_response, set(rd.target for rd in apex_ns))
            ns_names = set()
            glue = {}
            if delegation is not None and delegation[0] == zone:
                ns_names |= delegation[1]
                glue.update(delegation[2])
            if apex_ns is not None:
                ns_names |= set(rd.target for rd in apex_ns)
                for key, value in extra_glue.items():
                    glue.setdefault(key, value)
            if not ns_names:
                # No NS set at all: keep the servers that answered.
                return WalkResult(zone, [s.label for s in servers], list(servers), path)
            final_servers, unresolved = self._servers_for(ns_names, glue, depth)
            if not final_servers:
                raise WalkError('none of the nameservers of %s (%s) could be resolved to an address' % (
                    name_to_text(zone), ', '.join(sorted(unresolved))))
            return WalkResult(zone, sorted(name_to_text(n) for n in ns_names), final_servers, path)
        raise WalkError('more than %d referrals walking to %s' % (self.MAX_REFERRALS, name_to_text(qname)))


def configured_resolvers(path='/etc/resolv.conf'):
    """The resolvers the host is configured with (``nameserver`` lines of
    resolv.conf, the way the C library reads them), as Servers; empty when
    there are none."""
    servers = []
    try:
        with open(path, encoding='utf-8') as handle:
            lines = handle.read().splitlines()
    except OSError:
        return servers
    for line in lines:
        fields = line.split('#', 1)[0].split(';', 1)[0].split()
        if len(fields) >= 2 and fields[0] == 'nameserver':
            address = fields[1].split('%', 1)[0]
            try:
                ipaddress.ip_address(address)
            except ValueError:
                continue
            servers.append(Server(address, 53, source='discovery'))
    return servers


class ResolverDiscovery:
    """Find the authoritative nameservers of the zone that holds a name by
    asking recursive resolvers (by default the host's own, as community.dns's
    modules do) rather than walking down from the root servers, which a
    controller that may only use an internal resolver cannot reach.

    The zone is the closest ancestor of the name (the name included) that
    has an NS set; that set and each nameserver's addresses come from the
    same resolvers. Each nameserver is then asked directly on ``port``, so
    that the answers compared are the authoritative ones, never a cache.
    Same interface as DelegationWalker: ``walk(qname)`` returns a WalkResult
    whose path is the zone only, or raises WalkError."""

    def __init__(self, resolvers, port=53, query=send_query, timeout=lambda: 3.0, ipv6=False):
        if not resolvers:
            raise ValueError('the resolver discovery needs at least one resolver')
        self.resolvers = list(resolvers)
        self.port = int(port)
        self.query = query
        self.timeout = timeout
        self.ipv6 = ipv6

    def _ask(self, qname, rdtype):
        """The first usable answer of the resolvers (recursion desired)."""
        return ask_in_turn(self.query, self.resolvers, qname, rdtype, self.timeout(), recursion=True, who='resolver')[0]

    def _addresses(self, ns_name):
        addresses = []
        for rdtype in ['A'] + (['AAAA'] if self.ipv6 else []):
            response = self._ask(ns_name, rdtype)
            values, dummy, dummy2 = _rrset_ttl_values(response, ns_name, rdtype)
            addresses.extend(values)
        return addresses

    def walk(self, qname):
        zone = qname
        while True:
            response = self._ask(zone, 'NS')
            ns_rrset = response.get_rrset(response.answer, zone, dns.rdataclass.IN, dns.rdatatype.NS)
            if ns_rrset is not None:
                break
            if zone == dns.name.root:
                raise WalkError('the resolvers (%s) know no NS set for %s or any zone above it' % (
                    ', '.join(s.endpoint() for s in self.resolvers), name_to_text(qname)))
            zone = zone.parent()
        ns_names = sorted(set(rd.target for rd in ns_rrset))
        servers, unresolved = [], []
        for ns_name in ns_names:
            addresses = self._addresses(ns_name)
            if not addresses:
                unresolved.append(name_to_text(ns_name))
            for address in sorted(set(addresses)):
                servers.append(Server(address, self.port, name_to_text(ns_name), 'authoritative'))
        if not servers:
            raise WalkError('the resolvers (%s) name %s as the nameservers of %s but give none of them an address' % (
                ', '.join(s.endpoint() for s in self.resolvers), ', '.join(unresolved), name_to_text(zone) or '.'))
        zone_text = name_to_text(zone) or '.'
        return WalkResult(zone, [name_to_text(n) for n in ns_names], servers, [zone_text])
