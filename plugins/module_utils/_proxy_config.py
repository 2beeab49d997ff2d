# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""What a proxy will do, read from its Envoy configuration (pure functions).

The input is ``{'clusters': [...], 'listeners': [...], 'routes': [...]}`` in
Envoy's JSON form, from istiod over xDS (``_xds.fetch_proxy_config``) or from
an Envoy ``config_dump`` (``_xds.from_config_dump``). The summaries say:

- per inbound port of a sidecar, the mTLS mode it enforces: ``strict`` (only
  TLS with a client certificate is accepted), ``permissive`` (TLS and
  plaintext), ``disabled`` (plaintext only);
- per outbound host, its routes and their weighted destinations (service,
  port, subset, weight), and redirects;
- per gateway server (listener port), the SNI hosts, TLS mode, the secret
  (``credentialName``) and the hosts its routes serve;
- per cluster, the service, port, subset and the TLS it originates, and for
  outbound clusters the connection pool and outlier detection a
  DestinationRule's trafficPolicy gave it, in Istio's words;
- problems: routes whose destination cluster istiod did not push (a
  VirtualService naming a subset no DestinationRule defines, for example).
"""

from __future__ import annotations

import re

HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager'
DOWNSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext'
UPSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext'
PORT_INPUT = 'envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput'
INBOUND_LISTENER = 'virtualInbound'
# Filter chains of the inbound listener that never serve an application port.
_NON_APP_CHAINS = ('virtualInbound-blackhole', 'inbound-blackhole')
# Envoy's own clusters and Istio's internal ones, not destinations of user routes.
_SPECIAL_CLUSTERS = ('BlackHoleCluster', 'PassthroughCluster', 'InboundPassthroughCluster',
                     'InboundPassthroughClusterIpv4', 'InboundPassthroughClusterIpv6')


def _type_name(config):
    return ((config or {}).get('@type') or '').rsplit('/', 1)[-1]


def parse_cluster_name(name):
    """``outbound|9080|v1|reviews.default.svc.cluster.local`` -> its parts, or None."""
    parts = (name or '').split('|')
    if len(parts) != 4 or parts[0] not in ('outbound', 'inbound'):
        return None
    try:
        port = int(parts[1])
    except ValueError:
        return None
    return {'direction': parts[0], 'port': port, 'subset': parts[2], 'host': parts[3]}


def _socket_port(listener):
    return ((listener.get('address') or {}).get('socket_address') or {}).get('port_value')


def _tls_context(transport_socket):
    config = (transport_socket or {}).get('typed_config') or {}
    return config if _type_name(config) in (DOWNSTREAM_TLS, UPSTREAM_TLS) else None


def _sds_names(tls):
    common = (tls or {}).get('common_tls_context') or {}
    names = [item.get('name') for item in common.get('tls_certificate_sds_secret_configs') or [] if item.get('name')]
    validation = common.get('combined_validation_context') or {}
    ca_name = (validation.get('validation_context_sds_secret_config') or {}).get('name')
    if not ca_name:
        ca_name = (common.get('validation_context_sds_secret_config') or {}).get('name')
    return names, ca_name


def _bool(value):
    """A BoolValue in JSON form is a plain bool; absent is false."""
    return value is True or (isinstance(value, dict) and value.get('value') is True)


def chain_security(chain):
    """``'mtls'``, ``'tls'`` (server TLS without client certificate) or ``'plaintext'`` for a filter chain."""
    tls = _tls_context(chain.get('transport_socket'))
    if tls is None:
        return 'plaintext'
    return 'mtls' if _bool(tls.get('require_client_certificate')) else 'tls'


def _serves_traffic(chain):
    """A chain that hands connections to something (not a blackhole with no filter)."""
    if chain.get('name') in _NON_APP_CHAINS:
        return False
    return bool(chain.get('filters'))


# --------------------------------------------------------------------------
# Inbound: which filter chains can take a connection to a given port
# --------------------------------------------------------------------------

def _matcher_actions(matcher, port, out):
    """Chain names a filter chain matcher can select for destination ``port`` (every
    branch of inputs other than the destination port is followed)."""
    if not matcher:
        return
    tree = matcher.get('matcher_tree')
    if tree:
        input_type = _type_name((tree.get('input') or {}).get('typed_config'))
        mapping = ((tree.get('exact_match_map') or tree.get('prefix_match_map') or {}).get('map')) or {}
        if input_type == PORT_INPUT:
            if str(port) in mapping:
                _on_match(mapping[str(port)], port, out)
            else:
                _on_match(matcher.get('on_no_match'), port, out)
            return
        for branch in mapping.values():
            _on_match(branch, port, out)
    for item in (matcher.get('matcher_list') or {}).get('matchers') or []:
        _on_match(item.get('on_match'), port, out)
    _on_match(matcher.get('on_no_match'), port, out)


def _on_match(on_match, port, out):
    if not on_match:
        return
    action = on_match.get('action')
    if action:
        value = (action.get('typed_config') or {}).get('value')
        if isinstance(value, str) and value not in out:
            out.append(value)
    if on_match.get('matcher'):
        _matcher_actions(on_match['matcher'], port, out)


def _matcher_ports(matcher, out):
    if not matcher:
        return
    tree = matcher.get('matcher_tree')
    if tree:
        mapping = ((tree.get('exact_match_map') or tree.get('prefix_match_map') or {}).get('map')) or {}
        if _type_name((tree.get('input') or {}).get('typed_config')) == PORT_INPUT:
            for key in mapping:
                if key.isdigit():
                    out.add(int(key))
        for branch in mapping.values():
            _matcher_ports((branch or {}).get('matcher'), out)
    _matcher_ports((matcher.get('on_no_match') or {}).get('matcher'), out)


def inbound_chains(listener, port):
    """Filter chains of the inbound listener that a connection to ``port`` can land on."""
    chains = listener.get('filter_chains') or []
    if listener.get('filter_chain_matcher'):
        names = []
        _matcher_actions(listener['filter_chain_matcher'], port, names)
        by_name = {chain.get('name'): chain for chain in chains}
        return [by_name[name] for name in names if name in by_name]
    exact = [c for c in chains if ((c.get('filter_chain_match') or {}).get('destination_port')) == port]
    if exact:
        return exact
    return [c for c in chains if not (c.get('filter_chain_match') or {}).get('destination_port')]


def inbound_ports(listener):
    """The application ports the inbound listener has chains of their own for."""
    ports = set()
    if listener.get('filter_chain_matcher'):
        _matcher_ports(listener['filter_chain_matcher'], ports)
    for chain in listener.get('filter_chains') or []:
        port = (chain.get('filter_chain_match') or {}).get('destination_port')
        if port:
            ports.add(port)
    ports.discard(_socket_port(listener))  # 15006 itself: the blackhole
    return sorted(ports)


def mode_of(securities):
    """mTLS mode from the set of chain securities a port accepts."""
    plaintext = 'plaintext' in securities
    mtls = 'mtls' in securities
    if mtls and not plaintext:
        return 'strict'
    if mtls and plaintext:
        return 'permissive'
    if plaintext:
        return 'disabled'
    if 'tls' in securities:
        return 'tls'
    return 'none'


def summarize_inbound(listeners, extra_ports=()):
    """Per inbound port of a sidecar: the mTLS mode it enforces.

    ``extra_ports`` are ports the pod serves (container ports) that have no
    chain of their own; they are judged on the listener's catch-all chains.
    """
    listener = next((item for item in listeners if item.get('name') == INBOUND_LISTENER), None)
    if listener is None:
        return []
    out = []
    ports = inbound_ports(listener)
    for port in sorted(set(ports) | set(extra_ports)):
        chains = [chain for chain in inbound_chains(listener, port) if _serves_traffic(chain)]
        securities = sorted({chain_security(chain) for chain in chains})
        out.append({
            'port': port,
            'mode': mode_of(securities),
            'accepts': securities,
            'chains': sorted({chain.get('name') or '' for chain in chains}),
            'declared': port in ports,
        })
    return out


# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------

def _match_text(match):
    match = match or {}
    for key in ('prefix', 'path', 'path_separated_prefix'):
        if key in match:
            return '%s %s' % (key, match[key])
    regex = (match.get('safe_regex') or {}).get('regex')
    if regex is not None:
        return 'regex %s' % regex
    return 'any'


def destination(cluster_name, weight=None):
    parsed = parse_cluster_name(cluster_name) or {}
    return {
        'cluster': cluster_name,
        'host': parsed.get('host', ''),
        'port': parsed.get('port'),
        'subset': parsed.get('subset', ''),
        'weight': weight,
    }


def summarize_route(route):
    action = route.get('route') or {}
    out = {'name': route.get('name', ''), 'match': _match_text(route.get('match')), 'destinations': []}
    if action.get('cluster'):
        out['destinations'].append(destination(action['cluster'], 100))
    weighted = (action.get('weighted_clusters') or {}).get('clusters') or []
    for item in weighted:
        weight = item.get('weight')
        if isinstance(weight, dict):
            weight = weight.get('value')
        out['destinations'].append(destination(item.get('name'), int(weight or 0)))
    redirect = route.get('redirect')
    if redirect is not None:
        out['redirect'] = {
            'https': _bool(redirect.get('https_redirect')) or redirect.get('scheme_redirect') == 'https',
            'code': redirect.get('response_code', 'MOVED_PERMANENTLY'),
            'host': redirect.get('host_redirect', ''),
        }
    if route.get('direct_response') is not None:
        out['direct_response'] = (route['direct_response'] or {}).get('status')
    if action.get('timeout') is not None:
        out['timeout'] = action['timeout']
    if action.get('retry_policy') is not None:
        policy = action['retry_policy']
        out['retries'] = {
            'attempts': (policy.get('num_retries') if not isinstance(policy.get('num_retries'), dict)
                         else policy['num_retries'].get('value')),
            'retry_on': policy.get('retry_on', ''),
            'per_try_timeout': policy.get('per_try_timeout'),
        }
    return out


def summarize_routes(routes):
    """Per route configuration and virtual host: its routes and destinations."""
    out = []
    for config in routes:
        for vhost in config.get('virtual_hosts') or []:
            if vhost.get('name') in ('allow_any', 'block_all'):
                continue
            out.append({
                'route_config': config.get('name', ''),
                'name': vhost.get('name', ''),
                'domains': vhost.get('domains') or [],
                'routes': [summarize_route(route) for route in vhost.get('routes') or []],
            })
    # istiod's order of route configurations is not stable from one push to the next.
    return sorted(out, key=lambda v: (v['route_config'], v['name']))


# --------------------------------------------------------------------------
# Clusters
# --------------------------------------------------------------------------

def cluster_tls(cluster):
    """TLS the cluster originates: ``istio_mutual``, ``auto`` (Istio's auto mTLS: mutual TLS
    to endpoints with a sidecar, plaintext to the others), ``simple``, ``mutual`` or ``disable``."""
    tls = _tls_context(cluster.get('transport_socket'))
    matches = cluster.get('transport_socket_matches') or []
    if tls is None and matches:
        kinds = [_tls_context(m.get('transport_socket')) is not None for m in matches]
        if any(kinds) and not all(kinds):
            return 'auto'
        if all(kinds):
            tls = _tls_context(matches[0].get('transport_socket'))
    if tls is None:
        return 'disable'
    certs, ca_name = _sds_names(tls)
    if 'default' in certs and ca_name == 'ROOTCA':
        return 'istio_mutual'
    return 'mutual' if certs else 'simple'


HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
# Envoy's circuit breaker thresholds (default priority) and the connectionPool
# fields of an Istio DestinationRule that set them.
_POOL_FIELDS = (('max_connections', 'max_connections'), ('max_pending_requests', 'http1_max_pending_requests'),
                ('max_requests', 'http2_max_requests'), ('max_retries', 'max_retries'))
# Envoy's outlier detection and the outlierDetection fields that set them.
_OUTLIER_FIELDS = (('consecutive_5xx', 'consecutive_5xx_errors'), ('interval', 'interval'),
                   ('base_ejection_time', 'base_ejection_time'), ('max_ejection_percent', 'max_ejection_percent'))


def _unwrap(value):
    """A protobuf wrapper (``{'value': n}``) or a 64-bit integer rendered as a string, as a plain value."""
    if isinstance(value, dict) and set(value) == {'value'}:
        value = value['value']
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def cluster_connection_pool(cluster):
    """The connection pool limits of an outbound cluster, keyed as an Istio
    DestinationRule's ``connectionPool`` names them (snake_case): only those
    Envoy has (Istio writes 4294967295 for "no limit")."""
    out = {}
    thresholds = [t for t in (cluster.get('circuit_breakers') or {}).get('thresholds') or []
                  if t.get('priority', 'DEFAULT') == 'DEFAULT']
    if thresholds:
        for envoy, istio in _POOL_FIELDS:
            if thresholds[0].get(envoy) is not None:
                out[istio] = _unwrap(thresholds[0][envoy])
    options = (cluster.get('typed_extension_protocol_options') or {}).get(HTTP_PROTOCOL_OPTIONS) or {}
    per_connection = (options.get('common_http_protocol_options') or {}).get('max_requests_per_connection')
    if per_connection is not None:
        out['max_requests_per_connection'] = _unwrap(per_connection)
    return out


def cluster_outlier_detection(cluster):
    """The outlier detection of an outbound cluster, keyed as a DestinationRule's ``outlierDetection`` names it."""
    detection = cluster.get('outlier_detection')
    if detection is None:
        return {}
    return {istio: _unwrap(detection[envoy]) for envoy, istio in _OUTLIER_FIELDS if detection.get(envoy) is not None}


def summarize_clusters(clusters):
    out = []
    for cluster in clusters:
        name = cluster.get('name', '')
        parsed = parse_cluster_name(name)
        if parsed is None:
            continue
        item = dict(parsed, name=name)
        if parsed['direction'] == 'outbound':
            item['tls'] = cluster_tls(cluster)
            item['connection_pool'] = cluster_connection_pool(cluster)
            item['outlier_detection'] = cluster_outlier_detection(cluster)
        out.append(item)
    return sorted(out, key=lambda c: c['name'])


# --------------------------------------------------------------------------
# Gateways
# --------------------------------------------------------------------------

def _hcm(chain):
    for flt in chain.get('filters') or []:
        config = flt.get('typed_config') or {}
        if _type_name(config) == HCM:
            return config
    return None


def summarize_gateway(listeners, routes, service_ports=None):
    """Per gateway server (a listener's filter chain): port, hosts, TLS mode, secret, route hosts."""
    service_ports = service_ports or {}
    vhosts = {}
    for config in routes:
        vhosts[config.get('name')] = config.get('virtual_hosts') or []
    out = []
    for listener in listeners:
        port = _socket_port(listener)
        if port is None or listener.get('name') in (INBOUND_LISTENER, 'virtualOutbound'):
            continue
        for chain in listener.get('filter_chains') or []:
            tls = _tls_context(chain.get('transport_socket'))
            secrets, ca_name = _sds_names(tls)
            hcm = _hcm(chain) or {}
            route_name = (hcm.get('rds') or {}).get('route_config_name', '')
            served = []
            destinations = []
            redirects = False
            for vhost in vhosts.get(route_name, []):
                if vhost.get('name') == 'blackhole:%s' % port:
                    continue
                for route in vhost.get('routes') or []:
                    for dest in summarize_route(route)['destinations']:
                        if dest['host'] and dest['host'] not in destinations:
                            destinations.append(dest['host'])
                for domain in vhost.get('domains') or []:
                    host = domain.rsplit(':', 1)[0] if re.search(r':\d+$', domain) else domain
                    if host not in served:
                        served.append(host)
                redirects = redirects or any(
                    (summarize_route(r).get('redirect') or {}).get('https') for r in vhost.get('routes') or [])
            if tls is None:
                mode = 'none'
            elif _bool(tls.get('require_client_certificate')):
                mode = 'istio_mutual' if 'default' in secrets and ca_name == 'ROOTCA' else 'mutual'
            else:
                mode = 'simple'
            out.append({
                'listener': listener.get('name', ''),
                'port': port,
                'service_port': service_ports.get(port),
                'server_names': (chain.get('filter_chain_match') or {}).get('server_names') or [],
                'tls_mode': mode,
                'secrets': secrets,
                'credential_names': [s[len('kubernetes://'):] for s in secrets if s.startswith('kubernetes://')],
                'route_config': route_name,
                'hosts': served,
                'destinations': destinations,
                'https_redirect': redirects,
            })
    return sorted(out, key=lambda s: (s['port'], s['listener'], s['server_names']))


# --------------------------------------------------------------------------
# Problems and the whole summary
# --------------------------------------------------------------------------

def _port_served(vhost, cluster_names):
    """Whether the virtual host is for a port its service has. Istio adds the hosts of a
    VirtualService without a port to the route configuration of every HTTP port; on a port
    the service lacks, even the subset-less cluster is missing, and no request goes there."""
    dests = [d for r in vhost['routes'] for d in r['destinations'] if d['host']]
    if not dests:
        return True
    return any('outbound|%s||%s' % (d['port'], d['host']) in cluster_names for d in dests)


def route_problems(route_summaries, cluster_names):
    """Routes that send traffic to a cluster istiod did not push."""
    problems = []
    for vhost in route_summaries:
        for route in vhost['routes']:
            for dest in route['destinations']:
                name = dest['cluster']
                if name in cluster_names or name in _SPECIAL_CLUSTERS:
                    continue
                text = 'route %s of %s (route config %s) sends %s%% to cluster %s, which istiod did not push' % (
                    route['name'] or route['match'], vhost['name'], vhost['route_config'],
                    dest['weight'] if dest['weight'] is not None else '?', name)
                if dest['subset']:
                    text += ' (no DestinationRule defines subset %s of %s?)' % (dest['subset'], dest['host'])
                problems.append(text)
    return problems


def _host_selected(vhost, hosts):
    """Whether a virtual host answers for one of ``hosts`` as a caller names it.
    The domains Istio writes decide: a short name such as ``reviews`` is among
    them only for the caller's own namespace, so ``reviews`` does not select
    ``reviews.other-namespace.svc.cluster.local``."""
    if not hosts:
        return True
    names = [vhost['name']] + list(vhost['domains'])
    for host in hosts:
        for name in names:
            bare = name.rsplit(':', 1)[0] if re.search(r':\d+$', name) else name
            if bare == host:
                return True
    return False


def summarize(config, kind='sidecar', hosts=(), extra_ports=(), service_ports=None):
    """Everything the module returns about one proxy, from its configuration."""
    clusters = summarize_clusters(config.get('clusters') or [])
    cluster_names = {c.get('name') for c in config.get('clusters') or []}
    all_routes = [v for v in summarize_routes(config.get('routes') or []) if _port_served(v, cluster_names)]
    out = {
        'clusters': clusters,
        'routes': [r for r in all_routes if _host_selected(r, hosts)],
        'problems': route_problems(all_routes, cluster_names),
        'counts': {key: len(config.get(key) or []) for key in ('clusters', 'listeners', 'routes')},
    }
    if kind == 'router':
        out['inbound'] = []
        out['gateway_servers'] = summarize_gateway(config.get('listeners') or [], config.get('routes') or [],
                                                   service_ports)
    else:
        out['inbound'] = summarize_inbound(config.get('listeners') or [], extra_ports)
        out['gateway_servers'] = []
    return out


# --------------------------------------------------------------------------
# Expectations
# --------------------------------------------------------------------------

def _weights_of(vhost):
    """``{subset: weight}`` of a host's first route with destinations."""
    route = _first_route(vhost)
    return {d['subset'] or '': d['weight'] for d in route['destinations']} if route else {}


def _first_route(vhost):
    return next((route for route in vhost['routes'] if route['destinations']), None)


_DURATION_PART = re.compile(r'(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)')
_DURATION_UNITS = {'h': 3600, 'm': 60, 's': 1, 'ms': 1e-3, 'us': 1e-6, 'ns': 1e-9}


def duration_seconds(text):
    """Seconds of a duration as Istio takes it (``1m30s``, ``500ms``) or as
    Envoy's JSON renders it (``90s``, ``0.500s``); ``None`` if it is none."""
    if text is None:
        return None
    text = str(text).strip()
    parts = _DURATION_PART.findall(text)
    if not parts or ''.join(n + u for n, u in parts) != text:
        return None
    return round(sum(float(n) * _DURATION_UNITS[u] for n, u in parts), 9)


def _same_duration(got, want):
    return duration_seconds(got) is not None and duration_seconds(got) == duration_seconds(want)


def _route_resilience_unmet(label, vhost, want):
    """What of ``want``'s timeout and retries the host's route does not have."""
    unmet = []
    route = _first_route(vhost) or {}
    if want.get('timeout'):
        if not _same_duration(route.get('timeout'), want['timeout']):
            unmet.append('%s: %s has timeout %s, expected %s' % (
                label, vhost['name'], route.get('timeout') or 'none', want['timeout']))
    retries = want.get('retries')
    if retries:
        got = route.get('retries') or {'attempts': 0, 'per_try_timeout': None, 'retry_on': ''}
        if retries.get('attempts') is not None and int(got.get('attempts') or 0) != int(retries['attempts']):
            unmet.append('%s: %s retries %s time(s), expected %s' % (
                label, vhost['name'], got.get('attempts') or 0, retries['attempts']))
        per_try = retries.get('per_try_timeout')
        if per_try and not _same_duration(got.get('per_try_timeout'), per_try):
            unmet.append('%s: %s has per-try timeout %s, expected %s' % (
                label, vhost['name'], got.get('per_try_timeout') or 'none', retries['per_try_timeout']))
        if retries.get('retry_on'):
            want_on = {c.strip() for c in retries['retry_on'].split(',') if c.strip()}
            got_on = {c.strip() for c in (got.get('retry_on') or '').split(',') if c.strip()}
            if not want_on <= got_on:
                unmet.append('%s: %s retries on %s, expected %s' % (
                    label, vhost['name'], got.get('retry_on') or 'nothing', retries['retry_on']))
    return unmet


def _same_value(got, want):
    if isinstance(want, str) and duration_seconds(want) is not None:
        return _same_duration(got, want)
    return got is not None and str(got) == str(want)


def _traffic_policy_unmet(label, proxy, want):
    """What of ``want``'s connection pool and outlier detection the host's outbound clusters do not have."""
    host = want['host']
    # A short name is the Service of that name in the caller's own namespace, as Istio resolves it.
    prefix = '%s.%s.svc.' % (host, proxy.get('namespace')) if '.' not in host else '%s.' % host
    clusters = [c for c in proxy.get('clusters') or [] if c.get('direction') == 'outbound'
                and (c.get('host') == host or c.get('host', '').startswith(prefix))]
    if not clusters:
        return ['%s: istiod pushed no outbound cluster for host %s' % (label, host)]
    unmet = []
    for section in ('connection_pool', 'outlier_detection'):
        for key, value in sorted((want.get(section) or {}).items()):
            if value is None:
                continue
            wrong = sorted({'%s' % c.get(section, {}).get(key, 'unset') for c in clusters
                            if not _same_value(c.get(section, {}).get(key), value)})
            if wrong:
                unmet.append('%s: %s.%s of host %s is %s, expected %s' % (
                    label, section, key, host, '/'.join(wrong), value))
    return unmet


def unmet_expectations(proxy, expect):
    """What in ``expect`` the proxy's summary does not show, in words (empty: all met)."""
    unmet = []
    label = '%s/%s' % (proxy.get('namespace'), proxy.get('name'))
    mode = expect.get('inbound_mode')
    if mode and proxy.get('kind') == 'sidecar':
        if not proxy['inbound']:
            unmet.append('%s: istiod pushed no inbound listener' % label)
        for item in proxy['inbound']:
            if item['mode'] != mode:
                unmet.append('%s port %s: inbound mode %s (accepts %s), expected %s' % (
                    label, item['port'], item['mode'], ', '.join(item['accepts']) or 'nothing', mode))
    for want in expect.get('routes') or []:
        vhosts = [v for v in proxy['routes'] if _host_selected(v, [want['host']])] if 'routes' in proxy else []
        if not vhosts:
            unmet.append('%s: no route for host %s' % (label, want['host']))
            continue
        # A weight of 0 sends nothing: istiod may leave such a destination out.
        want_weights = {str(k): int(v) for k, v in (want.get('weights') or {}).items() if int(v)}
        for vhost in vhosts:
            got = _weights_of(vhost)
            if want_weights and {k: v for k, v in got.items() if v} != want_weights:
                unmet.append('%s: %s routes %s, expected %s' % (
                    label, vhost['name'], _weights_text(got), _weights_text(want_weights)))
            unmet.extend(_route_resilience_unmet(label, vhost, want))
    for want in expect.get('gateway_servers') or []:
        servers = [s for s in proxy.get('gateway_servers') or []
                   if want.get('port') in (s['port'], s['service_port'])]
        if not servers:
            unmet.append('%s: no gateway server on port %s' % (label, want.get('port')))
            continue
        for host in want.get('hosts') or []:
            if not any(host in s['hosts'] or host in s['server_names'] or '*' in s['hosts'] for s in servers):
                unmet.append('%s: port %s does not serve host %s' % (label, want.get('port'), host))
        if want.get('tls_mode') and not any(s['tls_mode'] == want['tls_mode'] for s in servers):
            unmet.append('%s: port %s has TLS mode %s, expected %s' % (
                label, want.get('port'), '/'.join(sorted({s['tls_mode'] for s in servers})), want['tls_mode']))
        credential = want.get('credential_name')
        if credential and not any(credential in s['credential_names'] for s in servers):
            unmet.append('%s: port %s serves secret(s) %s, expected kubernetes://%s' % (
                label, want.get('port'),
                ', '.join(sorted({n for s in servers for n in s['secrets']})) or 'none', want['credential_name']))
        wanted_destination = want.get('destination')
        if wanted_destination and not any(
                d == wanted_destination or d.split('.')[0] == wanted_destination
                for s in servers for d in s['destinations']):
            unmet.append('%s: port %s routes to %s, expected %s' % (
                label, want.get('port'), ', '.join(sorted({d for s in servers for d in s['destinations']})) or 'nothing',
                wanted_destination))
        if want.get('https_redirect') is not None and \
                any(s['https_redirect'] != want['https_redirect'] for s in servers):
            unmet.append('%s: port %s https redirect is %s, expected %s' % (
                label, want.get('port'), not want['https_redirect'], want['https_redirect']))
    for want in expect.get('traffic_policies') or []:
        unmet.extend(_traffic_policy_unmet(label, proxy, want))
    pushed = {c.get('name') for c in proxy.get('clusters') or []}
    for name in expect.get('clusters') or []:
        if name not in pushed:
            unmet.append('%s: istiod pushed no cluster %s' % (label, name))
    if expect.get('no_problems'):
        unmet.extend('%s: %s' % (label, p) for p in proxy['problems'])
    return unmet


def _weights_text(weights):
    return ', '.join('%s=%s' % (k or '(no subset)', v) for k, v in sorted(weights.items())) or 'nothing'
