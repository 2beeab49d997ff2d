#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_dns
short_description: Wait until a DNS name resolves to the expected A, AAAA or CNAME values
version_added: 0.1.0
description:
  - Waits until O(name) resolves to O(values) on the zone's authoritative nameservers and/or on given resolvers,
    for example until the DNS record of the Istio ingress gateway's load balancer IP is published.
  - The authoritative nameservers of the zone that holds O(name) are found as O(nameserver_discovery) says, by
    default by asking the host's configured resolver for the zone's NS set and their addresses (as community.dns's
    modules do; a controller that may only use an internal resolver can), or by walking the delegation from the
    root servers (or from O(start_servers)) down to the zone, the way a resolver out on the internet does, where
    the nameservers of the zone are those named by the parent's delegation together with the zone's own NS
    records. Either way every address of every nameserver is then asked directly, because resolvers will see
    whatever any of them serves.
  - Polls with a capped exponential back-off until O(timeout) seconds have passed on a monotonic clock.
  - 'On success it returns each server''s answer and TTL and the time it took. On failure the message says what was
    expected and what each server answered, for example: istio.example.com A: 203.0.113.9 expected,
    ns1.example.com (192.0.2.1:53) says 198.51.100.4, ns2.example.com (192.0.2.2:53) NXDOMAIN.
    NXDOMAIN, NODATA, SERVFAIL, REFUSED, a lame server, an unreachable
    server and a server that does not answer in time each have their own wording.'
  - The module only reads; it never reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - servicemesh.istio.wait
attributes:
  check_mode:
    support: full
    details:
      - The module only sends DNS queries and behaves the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - servicemesh.istio contributors (@servicemesh-istio)
options:
  name:
    description:
      - The DNS name to check, for example V(istio.example.com). Internationalized names are converted to IDNA.
      - A malformed name (empty label, label longer than 63 characters, characters other than letters, digits, V(-)
        and V(_)) is rejected before any query is sent.
    type: str
    required: true
  type:
    description:
      - The record type to check.
      - For V(A) and V(AAAA), a CNAME chain inside the answer is followed.
    type: str
    choices: [A, AAAA, CNAME]
    default: A
  values:
    description:
      - The expected values, IP addresses for V(A) and V(AAAA), host names for V(CNAME).
      - How they are compared with the answer is set by O(match).
    type: list
    elements: str
    required: true
    aliases: [value]
  match:
    description:
      - How one server's record set is compared with O(values).
      - V(exact) - the record set is exactly O(values) (order does not matter).
      - V(contains) - every value of O(values) is in the record set; other values are allowed.
      - V(any) - at least one value of O(values) is in the record set.
      - An empty answer never matches.
    type: str
    choices: [exact, contains, any]
    default: exact
  mode:
    description:
      - V(all) - every server asked (every authoritative nameserver address and every resolver) must answer as
        expected. Use this to know that the record has propagated everywhere.
      - V(any) - one server answering as expected is enough.
    type: str
    choices: [all, any]
    default: all
  authoritative:
    description:
      - Ask the authoritative nameservers of the zone holding O(name), found by walking the delegation.
      - If V(false), O(resolvers) must be given.
    type: bool
    default: true
  resolvers:
    description:
      - Resolvers (recursive DNS servers) to ask as well, for example a corporate resolver or a public one.
      - Queries to them have the recursion-desired flag set.
    type: list
    elements: dict
    suboptions:
      host:
        description:
          - IP address of the resolver. Names are not accepted, as resolving them would need a resolver.
        type: str
        required: true
      port:
        description:
          - UDP/TCP port of the resolver.
        type: int
        default: 53
  nameserver_discovery:
    description:
      - How the authoritative nameservers are found, with O(authoritative=true).
      - V(resolver) - ask recursive resolvers (O(discovery_resolvers), by default those of the host's
        C(/etc/resolv.conf)) for the NS set of the closest zone above O(name) and for the nameservers' addresses.
        A split-horizon resolver gives its own view of the zone here.
      - V(walk) - walk the delegation from the root servers, or from O(start_servers), without any resolver.
      - V(auto) - V(walk) when O(start_servers) is given, else V(resolver).
    type: str
    choices: [auto, resolver, walk]
    default: auto
    version_added: 0.2.0
  discovery_resolvers:
    description:
      - Resolvers for O(nameserver_discovery=resolver), instead of the host's configured ones.
      - Only the zone's NS set and the nameservers' addresses are asked of them; the record itself is asked of
        the nameservers (and of O(resolvers)).
    type: list
    elements: dict
    version_added: 0.2.0
    suboptions:
      host:
        description:
          - IP address of the resolver.
        type: str
        required: true
      port:
        description:
          - UDP/TCP port of the resolver.
        type: int
        default: 53
  start_servers:
    description:
      - Servers the delegation walk starts from, instead of the root servers (O(nameserver_discovery=walk)).
      - Useful for a private DNS tree, a split-horizon setup or tests; each server keeps its own port, while the
        nameservers discovered by the walk are asked on O(port).
      - The start servers are expected to serve the root zone or a zone above O(name); their referrals are followed.
    type: list
    elements: dict
    suboptions:
      host:
        description:
          - IP address of the server.
        type: str
        required: true
      port:
        description:
          - UDP/TCP port of the server.
        type: int
        default: 53
  port:
    description:
      - The port on which the nameservers discovered by the delegation walk are asked.
    type: int
    default: 53
  ipv6:
    description:
      - Also ask the IPv6 addresses (AAAA glue) of the authoritative nameservers.
      - By default only their IPv4 addresses are used, so that a controller without IPv6 connectivity does not
        report them as unreachable.
    type: bool
    default: false
  fail_on:
    description:
      - Answers that end the wait at once with a failure, instead of being retried until O(timeout).
      - By default every negative answer is retried, because a name that does not exist yet (NXDOMAIN) or a
        secondary nameserver that has not loaded the zone yet is what waiting is for.
      - V(unreachable) covers servers that refuse the connection, cannot be reached, or do not answer within
        O(query_timeout); it also covers a delegation walk that reached no server.
      - V(refused) covers REFUSED answers and authoritative servers answering without the authoritative flag (lame).
      - V(mismatch) ends the wait when a server answers with other values than expected.
    type: list
    elements: str
    choices: [nxdomain, nodata, servfail, refused, unreachable, mismatch]
    default: []
  query_timeout:
    description:
      - Timeout of one DNS query, in seconds. It is shortened so that no query runs past O(timeout).
    type: float
    default: 3
requirements:
  - dnspython >= 2.4.0
notes:
  - Only the system's network is used for the queries; no query goes through the system resolver unless it is
    listed in O(resolvers).
seealso:
  - module: community.dns.wait_for_txt
  - module: servicemesh.istio.wait_for_certificate
"""

EXAMPLES = r"""
- name: Wait until every authoritative nameserver publishes the gateway's IP
  servicemesh.istio.wait_for_dns:
    name: istio.example.com
    type: A
    values:
      - 203.0.113.9
    timeout: 600

- name: Wait until two public resolvers see the gateway's IPv4 and IPv6 addresses
  servicemesh.istio.wait_for_dns:
    name: istio.example.com
    type: AAAA
    values: [2001:db8::9]
    authoritative: false
    resolvers:
      - host: 192.0.2.53
      - host: 198.51.100.53
        port: 5353

- name: Wait for a CNAME, failing at once if the name does not exist
  servicemesh.istio.wait_for_dns:
    name: www.example.com
    type: CNAME
    values: [istio.example.com]
    fail_on: [nxdomain]
  register: dns_result

- name: Walk a private DNS tree that starts at internal root servers
  servicemesh.istio.wait_for_dns:
    name: istio.corp.example
    values: [10.0.0.9, 10.0.0.10]
    match: contains
    start_servers:
      - host: 10.0.0.2
    port: 53
"""

RETURN = r"""
name:
  description: The name that was checked, in lower-case IDNA form without the trailing dot.
  returned: always
  type: str
  sample: istio.example.com
type:
  description: The record type that was checked.
  returned: always
  type: str
  sample: A
values:
  description: The expected values, normalized.
  returned: always
  type: list
  elements: str
  sample: [203.0.113.9]
zone:
  description: The zone holding O(name), as found by the nameserver discovery (resolver or delegation walk).
  returned: when O(authoritative=true) and the discovery succeeded
  type: str
  sample: example.com
nameservers:
  description: The NS names of that zone (the parent's delegation and the zone's own NS records).
  returned: when O(authoritative=true) and the discovery succeeded
  type: list
  elements: str
  sample: [ns1.example.com, ns2.example.com]
delegation_path:
  description: The zones the walk went through, from the top down (only the zone with O(nameserver_discovery=resolver)).
  returned: when O(authoritative=true) and the discovery succeeded
  type: list
  elements: str
  sample: [com, example.com]
servers:
  description: The answer of every server asked in the last attempt.
  returned: always
  type: list
  elements: dict
  contains:
    server:
      description: The server's NS name, or its address for resolvers and start servers.
      type: str
      sample: ns1.example.com
    address:
      description: The address that was asked.
      type: str
      sample: 192.0.2.1
    port:
      description: The port that was asked.
      type: int
      sample: 53
    source:
      description: V(authoritative) for nameservers found by the walk, V(resolver) for O(resolvers).
      type: str
      sample: authoritative
    status:
      description:
        - V(ok), V(mismatch), V(nodata), V(nxdomain), V(servfail), V(refused), V(lame), V(error), V(unreachable)
          or V(timeout).
      type: str
      sample: ok
    rcode:
      description: The DNS response code, or null when there was no answer.
      type: str
      sample: NOERROR
    values:
      description: The values of the answer (sorted).
      type: list
      elements: str
      sample: [203.0.113.9]
    ttl:
      description: The TTL of the answer's record set, or null.
      type: int
      sample: 300
    authoritative:
      description: Whether the answer had the authoritative flag.
      type: bool
      sample: true
    cname_chain:
      description: CNAME targets followed inside the answer.
      type: list
      elements: str
      sample: []
    query_time:
      description: Seconds the query took.
      type: float
      sample: 0.0123
    message:
      description: The answer in words, as used in the failure message.
      type: str
      sample: says 203.0.113.9
walk_error:
  description: Why the nameserver discovery (resolver or delegation walk) failed in the last attempt.
  returned: on failure, when the discovery failed
  type: str
  sample: "no server answered istio.example.com NS: 192.0.2.1:53 unreachable (Connection refused)"
elapsed:
  description: Seconds spent waiting, on a monotonic clock.
  returned: always
  type: float
  sample: 4.21
attempts:
  description: How many times the servers were asked.
  returned: always
  type: int
  sample: 3
"""

from concurrent.futures import ThreadPoolExecutor
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.servicemesh.istio.plugins.module_utils import _dns
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC, Backoff, wait_until


SERVER_SPEC = dict(
    host=dict(type='str', required=True),
    port=dict(type='int', default=53),
)


def _servers_from_option(module, option, source):
    servers = []
    for entry in module.params[option] or []:
        try:
            address = _dns.parse_ip(entry['host'], what='%s host' % option)
        except _dns.DnsInputError as exc:
            module.fail_json(msg=str(exc))
        port = entry['port']
        if not 0 < port < 65536:
            module.fail_json(msg='%s port %r is out of range 1-65535' % (option, port))
        servers.append(_dns.Server(address, port, source=source))
    return servers


class DnsWaiter:
    def __init__(self, module):
        self.module = module
        params = module.params
        try:
            self.qname = _dns.parse_hostname(params['name'])
            self.rdtype = params['type']
            self.expected = sorted(set(_dns.normalize_value(self.rdtype, v) for v in params['values']))
        except _dns.DnsInputError as exc:
            module.fail_json(msg=str(exc))
        if not self.expected:
            module.fail_json(msg='values must hold at least one expected value')
        self.name_text = _dns.name_to_text(self.qname)
        self.match = params['match']
        self.mode = params['mode']
        self.resolvers = _servers_from_option(module, 'resolvers', 'resolver')
        start = _servers_from_option(module, 'start_servers', 'start')
        if not start:
            start = [_dns.Server(address, 53, label, 'start') for label, address in _dns.ROOT_SERVERS]
        if not 0 < params['port'] < 65536:
            module.fail_json(msg='port %r is out of range 1-65535' % params['port'])
        for option in ('timeout', 'query_timeout', 'initial_sleep', 'max_sleep'):
            if params[option] < 0 or (option != 'timeout' and params[option] == 0):
                module.fail_json(msg='%s must be positive, got %r' % (option, params[option]))
        if params['backoff_factor'] < 1:
            module.fail_json(msg='backoff_factor (%r) must be at least 1' % (params['backoff_factor'],))
        if params['max_sleep'] < params['initial_sleep']:
            module.fail_json(msg='max_sleep (%r) must not be smaller than initial_sleep (%r)' % (
                params['max_sleep'], params['initial_sleep']))
        self.start_servers = start
        self.discovery = params['nameserver_discovery']
        if self.discovery == 'auto':
            self.discovery = 'walk' if params['start_servers'] else 'resolver'
        if self.discovery == 'resolver' and params['start_servers']:
            module.fail_json(msg='start_servers are where the delegation walk starts; with '
                                 'nameserver_discovery=resolver give discovery_resolvers instead')
        self.discovery_resolvers = []
        if self.discovery == 'resolver' and params['authoritative']:
            self.discovery_resolvers = (_servers_from_option(module, 'discovery_resolvers', 'discovery')
                                        or _dns.configured_resolvers())
            if not self.discovery_resolvers:
                module.fail_json(msg='nameserver_discovery=resolver, but this host has no resolver configured '
                                     '(no nameserver line in /etc/resolv.conf): give discovery_resolvers, or walk '
                                     'the delegation from the root servers with nameserver_discovery=walk')
        self.authoritative = params['authoritative']
        self.port = params['port']
        self.ipv6 = params['ipv6']
        self.query_timeout = params['query_timeout']
        self.fail_statuses = set()
        for choice in params['fail_on']:
            self.fail_statuses.update(_dns.FAIL_ON_CHOICES[choice])
        self.timeout = params['timeout']
        self.backoff = Backoff(params['initial_sleep'], params['backoff_factor'], params['max_sleep'])
        self.deadline = None

    def _query_timeout(self):
        if self.deadline is None:
            return self.query_timeout
        return max(0.2, min(self.query_timeout, self.deadline - time.monotonic()))

    def attempt(self, remaining):
        # A query may run up to half a second past the deadline on the last attempt.
        self.deadline = None if remaining is None else time.monotonic() + max(remaining, 0.5)
        state = {'servers': [], 'walk': None, 'walk_error': None, 'walk_unreachable': False}
        servers = []
        if self.authoritative:
            if self.discovery == 'resolver':
                walker = _dns.ResolverDiscovery(self.discovery_resolvers, port=self.port,
                                                timeout=self._query_timeout, ipv6=self.ipv6)
            else:
                walker = _dns.DelegationWalker(self.start_servers, port=self.port,
                                               timeout=self._query_timeout, ipv6=self.ipv6)
            try:
                walk = walker.walk(self.qname)
            except _dns.WalkError as exc:
                state['walk_error'] = str(exc)
                state['walk_unreachable'] = exc.unreachable
            else:
                state['walk'] = walk
                servers.extend(walk.servers)
        servers.extend(self.resolvers)
        answers = []
        if servers:
            timeout = self._query_timeout()
            with ThreadPoolExecutor(max_workers=min(8, len(servers))) as pool:
                futures = [pool.submit(_dns.ask_server, server, self.qname, self.rdtype, self.expected,
                                       self.match, timeout) for server in servers]
                answers = [future.result() for future in futures]
        state['servers'] = answers
        good = [a for a in answers if a['status'] == _dns.STATUS_OK]
        if self.mode == 'all':
            success = state['walk_error'] is None and bool(answers) and len(good) == len(answers)
        else:
            success = bool(good)
        if success:
            return 'ok', state
        if any(a['status'] in self.fail_statuses for a in answers):
            return 'fatal', state
        if state['walk_error'] is not None and state['walk_unreachable'] and _dns.STATUS_UNREACHABLE in self.fail_statuses:
            return 'fatal', state
        return 'retry', state

    def describe(self, state):
        text = _dns.describe_answers(self.name_text, self.rdtype, self.expected, self.match, state['servers'])
        if state['walk_error'] is not None:
            text += '; %s failed: %s' % (
                'nameserver discovery' if self.discovery == 'resolver' else 'delegation walk', state['walk_error'])
        return text

    def run(self):
        outcome = wait_until(self.attempt, self.timeout, self.backoff)
        state = outcome.result
        result = dict(
            changed=False,
            name=self.name_text,
            type=self.rdtype,
            values=self.expected,
            servers=state['servers'],
            elapsed=round(outcome.elapsed, 3),
            attempts=outcome.attempts,
        )
        walk = state['walk']
        if walk is not None:
            result['zone'] = _dns.name_to_text(walk.zone) or '.'
            result['nameservers'] = walk.nameservers
            result['delegation_path'] = walk.path
        if state['walk_error'] is not None:
            result['walk_error'] = state['walk_error']
        if outcome.success:
            self.module.exit_json(**result)
        if outcome.aborted:
            failing = sorted(set(a['status'] for a in state['servers'] if a['status'] in self.fail_statuses))
            if not failing and state['walk_error'] is not None:
                failing = ['unreachable']
            msg = 'Failed at once (fail_on: %s) after %.1fs: %s' % (
                ', '.join(failing), outcome.elapsed, self.describe(state))
        else:
            msg = 'Timed out after %.1fs (%d attempts, mode %s): %s' % (
                outcome.elapsed, outcome.attempts, self.mode, self.describe(state))
        self.module.fail_json(msg=msg, **result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            type=dict(type='str', default='A', choices=list(_dns.RECORD_TYPES)),
            values=dict(type='list', elements='str', required=True, aliases=['value']),
            match=dict(type='str', default='exact', choices=['exact', 'contains', 'any']),
            mode=dict(type='str', default='all', choices=['all', 'any']),
            authoritative=dict(type='bool', default=True),
            resolvers=dict(type='list', elements='dict', options=SERVER_SPEC),
            start_servers=dict(type='list', elements='dict', options=SERVER_SPEC),
            nameserver_discovery=dict(type='str', default='auto', choices=['auto', 'resolver', 'walk']),
            discovery_resolvers=dict(type='list', elements='dict', options=SERVER_SPEC),
            port=dict(type='int', default=53),
            ipv6=dict(type='bool', default=False),
            fail_on=dict(type='list', elements='str', default=[], choices=sorted(_dns.FAIL_ON_CHOICES)),
            query_timeout=dict(type='float', default=3),
            **WAIT_ARGUMENT_SPEC
        ),
        required_if=[('authoritative', False, ['resolvers'])],
        supports_check_mode=True,
    )
    if not _dns.HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib('dnspython'), exception=_dns.DNSPYTHON_IMPORT_ERROR)
    DnsWaiter(module).run()


if __name__ == '__main__':
    main()
