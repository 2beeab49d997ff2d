# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_proxy_config, _xds and _proxy_info: the summaries of a proxy's configuration, on
configurations recorded from the test cluster's real istiod (tests/unit/plugins/fixtures/xds/,
recorded by tests/unit/plugins/record_xds.py) and on small hand-made ones; the node identity;
the wait loop on a fake reader and clock."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils import _proxy_config, _proxy_info, _xds
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC

FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures' / 'xds'


def recorded(name):
    with gzip.open(FIXTURES / ('%s.json.gz' % name), 'rt') as handle:
        return json.load(handle)


# --------------------------------------------------------------------------
# Recorded from the real istiod
# --------------------------------------------------------------------------

@pytest.mark.parametrize('name, mode, accepts', [
    ('reviews-permissive', 'permissive', ['mtls', 'plaintext']),
    ('reviews-strict', 'strict', ['mtls']),
    ('reviews-disable', 'disabled', ['plaintext']),
])
def test_inbound_mode_from_recorded_config(name, mode, accepts):
    dump = recorded(name)
    summary = _proxy_config.summarize(dump['config'], 'sidecar', extra_ports=[9080])
    port = [i for i in summary['inbound'] if i['port'] == 9080]
    assert port and port[0]['mode'] == mode and port[0]['accepts'] == accepts, summary['inbound']


def test_port_level_exception_from_recorded_config():
    dump = recorded('reviews-port-exception')
    summary = _proxy_config.summarize(dump['config'], 'sidecar', extra_ports=[9080])
    modes = {i['port']: i['mode'] for i in summary['inbound']}
    assert modes[9080] == 'permissive', summary['inbound']
    unmet = _proxy_config.unmet_expectations(dict(summary, name='reviews-v1-x', namespace='bi', kind='sidecar'),
                                             {'inbound_mode': 'strict'})
    assert unmet == ['bi/reviews-v1-x port 9080: inbound mode permissive (accepts mtls, plaintext), expected strict']


def test_weighted_split_from_recorded_config():
    dump = recorded('productpage-split')
    summary = _proxy_config.summarize(dump['config'], 'sidecar', hosts=['reviews'])
    (vhost,) = summary['routes']
    weights = [(d['subset'], d['weight']) for d in vhost['routes'][0]['destinations']]
    assert weights == [('v1', 80), ('v2', 20)]
    assert summary['problems'] == []
    proxy = dict(summary, name='productpage-v1-x', namespace=dump['namespace'], kind='sidecar')
    assert _proxy_config.unmet_expectations(proxy, {'routes': [{'host': 'reviews', 'weights': {'v1': 80, 'v2': 20}}]}) == []
    unmet = _proxy_config.unmet_expectations(proxy, {'routes': [{'host': 'reviews', 'weights': {'v1': 50, 'v2': 50}}]})
    assert unmet and 'routes v1=80, v2=20, expected v1=50, v2=50' in unmet[0]


def test_missing_subset_from_recorded_config():
    dump = recorded('productpage-missing-subset')
    summary = _proxy_config.summarize(dump['config'], 'sidecar', hosts=['reviews'])
    assert len(summary['problems']) == 1
    assert 'v9' in summary['problems'][0] and 'which istiod did not push' in summary['problems'][0]
    proxy = dict(summary, name='productpage-v1-x', namespace=dump['namespace'], kind='sidecar')
    unmet = _proxy_config.unmet_expectations(proxy, {'no_problems': True})
    assert unmet == ['%s/productpage-v1-x: %s' % (dump['namespace'], summary['problems'][0])]


def test_destination_rule_disable_from_recorded_config():
    dump = recorded('reviews-ratings-disable')
    clusters = {c['name']: c for c in _proxy_config.summarize(dump['config'], 'sidecar')['clusters']}
    name = 'outbound|9080||ratings.%s.svc.cluster.local' % dump['namespace']
    assert clusters[name]['tls'] == 'disable'
    default = {c['name']: c for c in _proxy_config.summarize(recorded('reviews-permissive')['config'],
                                                             'sidecar')['clusters']}
    assert default['outbound|9080||ratings.%s.svc.cluster.local' % recorded('reviews-permissive')['namespace']]['tls'] \
        == 'auto'


def test_gateway_from_recorded_config():
    dump = recorded('gateway')
    servers = _proxy_config.summarize(dump['config'], 'router', service_ports={80: 80, 443: 443})['gateway_servers']
    by_port = {s['service_port']: s for s in servers if dump['host'] in s['hosts'] + s['server_names']}
    assert by_port[443]['destinations'] == ['productpage.%s.svc.cluster.local' % dump['app_namespace']]
    assert by_port[443]['tls_mode'] == 'simple'
    assert by_port[443]['credential_names'] == [dump['credential_name']]
    assert by_port[443]['server_names'] == [dump['host']]
    assert by_port[80]['tls_mode'] == 'none' and dump['host'] in by_port[80]['hosts']
    proxy = dict(_proxy_config.summarize(dump['config'], 'router', service_ports={80: 80, 443: 443}),
                 name='gw', namespace='istio-system', kind='router')
    expect = {'gateway_servers': [
        dict(port=80, hosts=[dump['host']], tls_mode='none', https_redirect=False,
             destination='productpage'),
        dict(port=443, hosts=[dump['host']], tls_mode='simple', credential_name=dump['credential_name'],
             destination='productpage.%s.svc.cluster.local' % dump['app_namespace'])]}
    assert _proxy_config.unmet_expectations(proxy, expect) == []
    expect['gateway_servers'][1]['credential_name'] = 'other'
    expect['gateway_servers'][0]['hosts'] = ['elsewhere.example.com']
    expect['gateway_servers'][0]['destination'] = 'details'
    expect['gateway_servers'][0]['https_redirect'] = True
    unmet = _proxy_config.unmet_expectations(proxy, expect)
    assert unmet == ['istio-system/gw: port 80 does not serve host elsewhere.example.com',
                     'istio-system/gw: port 80 routes to productpage.%s.svc.cluster.local, expected details'
                     % dump['app_namespace'],
                     'istio-system/gw: port 80 https redirect is False, expected True',
                     'istio-system/gw: port 443 serves secret(s) kubernetes://%s, expected kubernetes://other'
                     % dump['credential_name']]


def test_gateway_redirect_by_scheme_counts_as_https_redirect():
    """A VirtualService redirect with scheme https (Envoy's scheme_redirect), as ingress_tls writes it."""
    listener = {'name': '0.0.0.0_80', 'address': {'socket_address': {'port_value': 80}},
                'filter_chains': [{'filters': [{'name': 'hcm', 'typed_config': {
                    '@type': 'type.googleapis.com/' + _proxy_config.HCM, 'rds': {'route_config_name': 'http.80'}}}]}]}
    routes = [{'name': 'http.80', 'virtual_hosts': [{'name': 'h:80', 'domains': ['h.example.com'], 'routes': [
        {'name': 'https-redirect', 'match': {'prefix': '/productpage'},
         'redirect': {'scheme_redirect': 'https', 'response_code': 'MOVED_PERMANENTLY'}},
        {'match': {'prefix': '/.well-known/acme-challenge/'}, 'route': {'cluster': 'outbound|8089||solver.ns.svc.cluster.local'}}]}]}]
    (server,) = _proxy_config.summarize_gateway([listener], routes)
    assert server['https_redirect'] is True and server['hosts'] == ['h.example.com']


def test_recorded_config_dump_form_gives_the_same_summary():
    """An Envoy /config_dump holds the same resources; from_config_dump finds them."""
    config = recorded('reviews-strict')['config']
    dump = {'configs': [
        {'@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
         'dynamic_active_clusters': [{'cluster': c} for c in config['clusters']]},
        {'@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
         'dynamic_listeners': [{'name': item['name'], 'active_state': {'listener': item}} for item in config['listeners']]},
        {'@type': 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump',
         'dynamic_route_configs': [{'route_config': r} for r in config['routes']]},
    ]}
    assert _proxy_config.summarize(_xds.from_config_dump(dump)) == _proxy_config.summarize(config)


# --------------------------------------------------------------------------
# Hand-made configurations: the rules one at a time
# --------------------------------------------------------------------------

def tls_socket(require_client=True, certs=('default',), ca='ROOTCA', upstream=False):
    kind = 'UpstreamTlsContext' if upstream else 'DownstreamTlsContext'
    config = {'@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.%s' % kind,
              'common_tls_context': {'tls_certificate_sds_secret_configs': [{'name': n} for n in certs],
                                     'combined_validation_context': {
                                         'validation_context_sds_secret_config': {'name': ca}}}}
    if require_client:
        config['require_client_certificate'] = True
    return {'name': 'envoy.transport_sockets.tls', 'typed_config': config}


HCM = {'name': 'envoy.filters.network.http_connection_manager',
       'typed_config': {'@type': 'type.googleapis.com/' + _proxy_config.HCM}}


def matcher_listener(port_branches, on_no_match_chain=None):
    """A virtualInbound listener with a filter chain matcher: port -> transport protocol -> chain."""
    def action(name):
        return {'action': {'name': name, 'typed_config': {'@type': 'type.googleapis.com/google.protobuf.StringValue',
                                                          'value': name}}}

    port_map = {}
    chains = []
    for port, by_protocol in port_branches.items():
        proto_map = {}
        for protocol, (chain_name, socket) in by_protocol.items():
            proto_map[protocol] = action(chain_name)
            chain = {'name': chain_name, 'filters': [HCM]}
            if socket:
                chain['transport_socket'] = socket
            chains.append(chain)
        port_map[str(port)] = {'matcher': {'matcher_tree': {
            'input': {'typed_config': {'@type': 'type.googleapis.com/envoy.extensions.matching.common_inputs.'
                                                'network.v3.TransportProtocolInput'}},
            'exact_match_map': {'map': proto_map}}}}
    matcher = {'matcher_tree': {
        'input': {'typed_config': {'@type': 'type.googleapis.com/' + _proxy_config.PORT_INPUT}},
        'exact_match_map': {'map': port_map}}}
    if on_no_match_chain:
        matcher['on_no_match'] = action(on_no_match_chain[0])
        chain = {'name': on_no_match_chain[0], 'filters': [HCM]}
        if on_no_match_chain[1]:
            chain['transport_socket'] = on_no_match_chain[1]
        chains.append(chain)
    return {'name': 'virtualInbound', 'address': {'socket_address': {'address': '0.0.0.0', 'port_value': 15006}},
            'filter_chains': chains, 'filter_chain_matcher': matcher}


def test_matcher_walk_per_port():
    listener = matcher_listener({
        9080: {'tls': ('0.0.0.0_9080_tls', tls_socket())},
        9090: {'tls': ('0.0.0.0_9090_tls', tls_socket()), 'raw_buffer': ('0.0.0.0_9090', None)},
        9100: {'raw_buffer': ('0.0.0.0_9100', None)},
    }, on_no_match_chain=('virtualInbound-catchall', tls_socket()))
    summary = _proxy_config.summarize_inbound([listener], extra_ports=[7000])
    assert [(i['port'], i['mode'], i['declared']) for i in summary] == [
        (7000, 'strict', False), (9080, 'strict', True), (9090, 'permissive', True), (9100, 'disabled', True)]


def test_legacy_filter_chain_match():
    listener = {'name': 'virtualInbound', 'address': {'socket_address': {'port_value': 15006}}, 'filter_chains': [
        {'name': 'a', 'filter_chain_match': {'destination_port': 9080, 'transport_protocol': 'tls'},
         'transport_socket': tls_socket(), 'filters': [HCM]},
        {'name': 'b', 'filter_chain_match': {'destination_port': 9080, 'transport_protocol': 'raw_buffer'},
         'filters': [HCM]},
        {'name': 'virtualInbound-blackhole', 'filter_chain_match': {'destination_port': 15006}, 'filters': [HCM]},
        {'name': 'c', 'filter_chain_match': {'destination_port': 8000}, 'transport_socket': tls_socket(False),
         'filters': [HCM]},
    ]}
    assert [(i['port'], i['mode']) for i in _proxy_config.summarize_inbound([listener])] == [
        (8000, 'tls'), (9080, 'permissive')]


@pytest.mark.parametrize('securities, mode', [
    ({'mtls'}, 'strict'), ({'mtls', 'plaintext'}, 'permissive'), ({'plaintext'}, 'disabled'), (set(), 'none'),
    ({'tls'}, 'tls'),
])
def test_mode_of(securities, mode):
    assert _proxy_config.mode_of(securities) == mode


@pytest.mark.parametrize('cluster, tls', [
    ({'name': 'x', 'transport_socket': tls_socket(upstream=True)}, 'istio_mutual'),
    ({'name': 'x', 'transport_socket': tls_socket(upstream=True, certs=(), ca='file-root:/ca.pem')}, 'simple'),
    ({'name': 'x', 'transport_socket': tls_socket(upstream=True, certs=('kubernetes://client'), ca='kubernetes://ca')},
     'mutual'),
    ({'name': 'x', 'transport_socket_matches': [
        {'name': 'tlsMode-istio', 'match': {'tlsMode': 'istio'}, 'transport_socket': tls_socket(upstream=True)},
        {'name': 'tlsMode-disabled', 'match': {}, 'transport_socket': {'name': 'envoy.transport_sockets.raw_buffer'}}]},
     'auto'),
    ({'name': 'x'}, 'disable'),
])
def test_cluster_tls(cluster, tls):
    assert _proxy_config.cluster_tls(cluster) == tls


def test_routes_redirect_retries_and_special_clusters():
    routes = [{'name': '9080', 'virtual_hosts': [
        {'name': 'allow_any', 'domains': ['*'], 'routes': [{'route': {'cluster': 'PassthroughCluster'}}]},
        {'name': 'reviews.bi.svc.cluster.local:9080', 'domains': ['reviews.bi.svc.cluster.local', 'reviews'],
         'routes': [{'name': 'default', 'match': {'prefix': '/'},
                     'route': {'cluster': 'outbound|9080|v3|reviews.bi.svc.cluster.local', 'timeout': '2s',
                               'retry_policy': {'num_retries': 3, 'retry_on': '5xx', 'per_try_timeout': '1s'}}}]},
        {'name': 'web:80', 'domains': ['web.example.com'],
         'routes': [{'match': {'path': '/x'}, 'redirect': {'https_redirect': True, 'response_code': 'FOUND'}}]},
    ]}]
    summary = _proxy_config.summarize_routes(routes)
    assert [v['name'] for v in summary] == ['reviews.bi.svc.cluster.local:9080', 'web:80']
    route = summary[0]['routes'][0]
    assert route['timeout'] == '2s' and route['retries'] == {'attempts': 3, 'retry_on': '5xx', 'per_try_timeout': '1s'}
    assert route['destinations'] == [{'cluster': 'outbound|9080|v3|reviews.bi.svc.cluster.local',
                                      'host': 'reviews.bi.svc.cluster.local', 'port': 9080, 'subset': 'v3',
                                      'weight': 100}]
    assert summary[1]['routes'][0]['redirect'] == {'https': True, 'code': 'FOUND', 'host': ''}
    problems = _proxy_config.route_problems(summary, {'outbound|9080||reviews.bi.svc.cluster.local'})
    assert len(problems) == 1 and 'subset v3 of reviews.bi.svc.cluster.local' in problems[0]


@pytest.mark.parametrize('name, parsed', [
    ('outbound|9080|v1|reviews.default.svc.cluster.local',
     {'direction': 'outbound', 'port': 9080, 'subset': 'v1', 'host': 'reviews.default.svc.cluster.local'}),
    ('inbound|9080||', {'direction': 'inbound', 'port': 9080, 'subset': '', 'host': ''}),
    ('BlackHoleCluster', None), ('outbound|x||a', None), ('', None),
])
def test_parse_cluster_name(name, parsed):
    assert _proxy_config.parse_cluster_name(name) == parsed


# --------------------------------------------------------------------------
# Node identity
# --------------------------------------------------------------------------

def pod(kind='sidecar', ip='10.244.0.7', image='docker.io/istio/proxyv2:1.30.4', native=False):
    proxy = {'name': 'istio-proxy', 'image': image,
             'args': ['proxy', 'router' if kind == 'router' else 'sidecar', '--domain', '$(POD_NAMESPACE).svc.cluster.local'],
             'env': [{'name': 'ISTIO_META_CLUSTER_ID', 'value': 'Kubernetes'},
                     {'name': 'ISTIO_META_WORKLOAD_NAME', 'value': 'reviews-v1'},
                     {'name': 'ISTIO_META_POD_PORTS', 'value': '[{"containerPort":9080,"protocol":"TCP"}]'},
                     {'name': 'ISTIO_META_MESH_ID', 'value': 'cluster.local'},
                     {'name': 'POD_NAME', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
                     {'name': 'ISTIO_META_APP', 'valueFrom': {'fieldRef': {'fieldPath': "metadata.labels['app']"}}},
                     {'name': 'SECRET', 'valueFrom': {'secretKeyRef': {'name': 's', 'key': 'k'}}}]}
    spec = {'serviceAccountName': 'bookinfo-reviews', 'nodeName': 'kwok-worker-1',
            'containers': [{'name': 'reviews', 'ports': [{'containerPort': 9080}]}]}
    if native:
        spec['initContainers'] = [dict(proxy, restartPolicy='Always')]
    else:
        spec['containers'].append(proxy)
    return {'metadata': {'name': 'reviews-v1-abc', 'namespace': 'bi',
                         'labels': {'app': 'reviews', 'version': 'v1', 'pod-template-hash': 'abc'},
                         'annotations': {'sidecar.istio.io/status': '{}'}},
            'spec': spec, 'status': {'podIP': ip, 'podIPs': [{'ip': ip}], 'phase': 'Running'}}


def test_node_identity_of_a_sidecar():
    node_id, meta = _xds.node_identity(pod(), istio_version='9.9.9')
    assert node_id == 'sidecar~10.244.0.7~reviews-v1-abc.bi~bi.svc.cluster.local'
    assert meta['NAMESPACE'] == 'bi' and meta['NAME'] == 'reviews-v1-abc'
    assert meta['SERVICE_ACCOUNT'] == 'bookinfo-reviews'
    assert meta['LABELS'] == {'app': 'reviews', 'version': 'v1'}
    assert meta['INSTANCE_IPS'] == '10.244.0.7'
    assert meta['ISTIO_VERSION'] == '1.30.4', 'the proxy image tag wins over istiod\'s version'
    assert meta['CLUSTER_ID'] == 'Kubernetes' and meta['WORKLOAD_NAME'] == 'reviews-v1'
    assert meta['POD_PORTS'] == '[{"containerPort":9080,"protocol":"TCP"}]'
    assert meta['APP'] == 'reviews', 'a fieldRef to a label is resolved'
    assert 'SECRET' not in json.dumps(meta)


def test_node_identity_of_a_gateway_and_a_native_sidecar():
    node_id, meta = _xds.node_identity(pod(kind='router', image='docker.io/istio/proxyv2:auto'), istio_version='1.31.0')
    assert node_id.startswith('router~10.244.0.7~') and meta['ISTIO_VERSION'] == '1.31.0'
    native = pod(native=True)
    assert _xds.proxy_container(native)['restartPolicy'] == 'Always'
    assert _xds.node_identity(native)[0].startswith('sidecar~')


# --------------------------------------------------------------------------
# The module's logic on a fake reader
# --------------------------------------------------------------------------

def params(**kwargs):
    out = {k: v.get('default') for k, v in _proxy_info.PROXY_CONFIG_INFO_SPEC.items()}
    out.update({k: v.get('default') for k, v in WAIT_ARGUMENT_SPEC.items()})
    out.update(kwargs)
    return out


@pytest.mark.parametrize('kwargs, error', [
    (dict(name='a', label_selectors=['b=c']), 'give name or label_selectors, not both'),
    (dict(istiod_address='istiod'), 'istiod_address must be host:port'),
    (dict(expect={'routes': [{'host': 'r', 'weights': {'v1': 'x'}}]}), 'weights.v1 must be an integer'),
    (dict(expect={'routes': [{'host': 'r', 'weights': {'v1': 101}}]}), 'from 0 to 100'),
    (dict(min_pods=-1), 'min_pods must be >= 0'),
    (dict(expect={'routes': [{'host': 'r', 'timeout': '10 seconds'}]}), 'expect.routes[0].timeout must be a duration'),
    (dict(expect={'routes': [{'host': 'r', 'retries': {'per_try_timeout': 'x'}}]}),
     'expect.routes[0].retries.per_try_timeout must be a duration'),
    (dict(expect={'traffic_policies': [{'host': 'r', 'outlier_detection': {'interval': '5'}}]}),
     'expect.traffic_policies[0].outlier_detection.interval must be a duration'),
    (dict(max_sleep=0.1), 'max_sleep must not be smaller'),
])
def test_input_errors(kwargs, error):
    assert any(error in e for e in _proxy_info.input_errors(params(namespace='bi', **kwargs)))


def test_service_ports_maps_target_ports_to_service_ports():
    gateway = pod(kind='router')
    gateway['metadata']['labels'] = {'istio': 'ingressgateway'}
    gateway['spec']['containers'][0]['ports'] = [{'containerPort': 8443, 'name': 'https'}]
    services = [{'spec': {'selector': {'istio': 'ingressgateway'}, 'ports': [
        {'port': 80, 'targetPort': 8080}, {'port': 443, 'targetPort': 'https'}]}},
        {'spec': {'selector': {'app': 'other'}, 'ports': [{'port': 1, 'targetPort': 2}]}}]
    assert _proxy_info.service_ports(gateway, services) == {8080: 80, 8443: 443}


class FakeReader:
    def __init__(self, pods):
        self.pods = pods

    def get(self, kind, name, namespace=None):
        return next((p for p in self.pods if p['metadata']['name'] == name), None) if kind == 'Pod' else None

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        return list(self.pods) if kind == 'Pod' else []


def test_waiter_waits_for_the_expected_mode_then_succeeds(monkeypatch):
    configs = [recorded('reviews-permissive')['config']] * 2 + [recorded('reviews-strict')['config']]
    monkeypatch.setattr(_xds, 'fetch_proxy_config', lambda *a, **k: configs.pop(0))
    fake = FakeReader([pod()])
    waiter = _proxy_info.ProxyConfigWaiter(params(namespace='bi', source='istiod', istiod_address='127.0.0.1:15010',
                                                  expect={'inbound_mode': 'strict'}, timeout=10), fake)
    now = [0.0]
    result = waiter.run(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert 'failed' not in result and result['attempts'] == 3, result
    assert result['proxies'][0]['inbound'][0]['mode'] == 'strict'
    assert result['summary'] == ['bi/reviews-v1-abc (sidecar, from istiod); inbound 9080 strict']


def test_waiter_times_out_naming_pod_and_port(monkeypatch):
    monkeypatch.setattr(_xds, 'fetch_proxy_config', lambda *a, **k: recorded('reviews-permissive')['config'])
    waiter = _proxy_info.ProxyConfigWaiter(params(namespace='bi', source='istiod', istiod_address='127.0.0.1:15010',
                                                  expect={'inbound_mode': 'strict'}, timeout=3), FakeReader([pod()]))
    now = [0.0]
    result = waiter.run(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert result['failed'] and result['msg'].startswith('Timed out after 3.0 s'), result['msg']
    assert 'bi/reviews-v1-abc port 9080: inbound mode permissive (accepts mtls, plaintext), expected strict' \
        in result['msg']


def test_waiter_without_pods_with_a_proxy(monkeypatch):
    plain = pod()
    plain['spec']['containers'] = plain['spec']['containers'][:1]
    waiter = _proxy_info.ProxyConfigWaiter(params(namespace='bi', source='istiod', timeout=0), FakeReader([plain]))
    result = waiter.run(clock=lambda: 0.0, sleep=lambda s: None)
    assert result['failed'] and result['skipped'] == ['reviews-v1-abc']
    assert '0 running pod(s) with an istio-proxy sidecar' in result['msg'] and 'without one: reviews-v1-abc' in result['msg']


def test_auto_falls_back_to_istiod_with_a_note(monkeypatch):
    monkeypatch.setattr(_xds, 'fetch_proxy_config', lambda *a, **k: recorded('reviews-strict')['config'])

    def no_exec(pod_obj):
        raise OSError('Handshake status 500: container not found')

    waiter = _proxy_info.ProxyConfigWaiter(params(namespace='bi', istiod_address='127.0.0.1:15010', timeout=0),
                                           FakeReader([pod()]), exec_config_dump=no_exec)
    result = waiter.run(clock=lambda: 0.0, sleep=lambda s: None)
    (proxy,) = result['proxies']
    assert proxy['source'] == 'istiod'
    assert proxy['note'].startswith('the istio-proxy container could not be read (Handshake status 500')


def test_envoy_source_reads_the_config_dump():
    config = recorded('reviews-strict')['config']
    dump = {'configs': [
        {'@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
         'dynamic_listeners': [{'active_state': {'listener': item}} for item in config['listeners']]}]}
    waiter = _proxy_info.ProxyConfigWaiter(params(namespace='bi', source='envoy', timeout=0), FakeReader([pod()]),
                                           exec_config_dump=lambda p: dump)
    result = waiter.run(clock=lambda: 0.0, sleep=lambda s: None)
    assert result['proxies'][0]['source'] == 'envoy' and result['proxies'][0]['inbound'][0]['mode'] == 'strict'


def test_a_short_host_selects_only_the_callers_own_namespace():
    """Istio lists the short name only among the domains of the caller's own
    namespace's service: ``reviews`` must not also select another namespace's."""
    own = {'name': 'reviews.shop.svc.cluster.local:9080',
           'domains': ['reviews.shop.svc.cluster.local', 'reviews', 'reviews.shop.svc', 'reviews.shop', '10.96.0.7']}
    other = {'name': 'reviews.legacy.svc.cluster.local:9080',
             'domains': ['reviews.legacy.svc.cluster.local', 'reviews.legacy.svc', 'reviews.legacy', '10.96.0.9']}
    assert _proxy_config._host_selected(own, ['reviews'])
    assert not _proxy_config._host_selected(other, ['reviews'])
    assert _proxy_config._host_selected(other, ['reviews.legacy'])


# --------------------------------------------------------------------------
# Resilience: recorded from the real istiod, with canary_resilience applied
# (timeout 10s; retries 3, 2s, 5xx,connect-failure; maxConnections 100,
# http1MaxPendingRequests 10, maxRequestsPerConnection 5; outlier detection
# 5 errors, 10s, 30s, 50 %)
# --------------------------------------------------------------------------

RESILIENCE = {
    'routes': [{'host': 'reviews', 'timeout': '10s',
                'retries': {'attempts': 3, 'per_try_timeout': '2s', 'retry_on': 'connect-failure,5xx'}}],
    'traffic_policies': [{'host': 'reviews.default.svc.cluster.local',
                          'connection_pool': {'max_connections': 100, 'http1_max_pending_requests': 10,
                                              'max_requests_per_connection': 5},
                          'outlier_detection': {'consecutive_5xx_errors': 5, 'interval': '10s',
                                                'base_ejection_time': '30s', 'max_ejection_percent': 50}}],
}


def resilience_proxy():
    dump = recorded('productpage-resilience')
    summary = _proxy_config.summarize(dump['config'], 'sidecar', hosts=['reviews'])
    return dict(summary, name='productpage-v1-x', namespace=dump['namespace'], kind='sidecar')


def test_resilience_from_recorded_config():
    proxy = resilience_proxy()
    clusters = {c['name']: c for c in proxy['clusters']}
    v2 = clusters['outbound|9080|v2|reviews.default.svc.cluster.local']
    assert v2['connection_pool'] == {'max_connections': 100, 'http1_max_pending_requests': 10,
                                     'http2_max_requests': 4294967295, 'max_retries': 4294967295,
                                     'max_requests_per_connection': 5}
    assert v2['outlier_detection'] == {'consecutive_5xx_errors': 5, 'interval': '10s', 'base_ejection_time': '30s',
                                       'max_ejection_percent': 50}
    # A host without a DestinationRule: Istio's defaults, no outlier detection.
    istiod = clusters['outbound|15010||istiod.istio-system.svc.cluster.local']
    assert istiod['outlier_detection'] == {} and istiod['connection_pool']['max_connections'] == 4294967295
    route = proxy['routes'][0]['routes'][0]
    assert route['timeout'] == '10s'
    assert route['retries'] == {'attempts': 3, 'per_try_timeout': '2s', 'retry_on': '5xx,connect-failure'}
    # Durations compare as lengths of time, retry conditions as sets, short host names in the caller's namespace.
    assert _proxy_config.unmet_expectations(proxy, RESILIENCE) == []
    same = {'routes': [dict(RESILIENCE['routes'][0], timeout='10000ms')],
            'traffic_policies': [dict(RESILIENCE['traffic_policies'][0], host='reviews')]}
    assert _proxy_config.unmet_expectations(proxy, same) == []


@pytest.mark.parametrize('expect, message', [
    ({'routes': [{'host': 'reviews', 'timeout': '1m'}]},
     'reviews.default.svc.cluster.local:9080 has timeout 10s, expected 1m'),
    ({'routes': [{'host': 'reviews', 'retries': {'attempts': 2}}]}, 'retries 3 time(s), expected 2'),
    ({'routes': [{'host': 'reviews', 'retries': {'attempts': 3, 'per_try_timeout': '500ms'}}]},
     'has per-try timeout 2s, expected 500ms'),
    ({'routes': [{'host': 'reviews', 'retries': {'attempts': 3, 'retry_on': 'gateway-error'}}]},
     'retries on 5xx,connect-failure, expected gateway-error'),
    ({'routes': [{'host': 'ratings', 'timeout': '10s'}]}, 'no route for host ratings'),
    ({'traffic_policies': [{'host': 'reviews', 'connection_pool': {'max_connections': 10}}]},
     'connection_pool.max_connections of host reviews is 100, expected 10'),
    ({'traffic_policies': [{'host': 'ratings', 'outlier_detection': {'interval': '10s'}}]},
     'outlier_detection.interval of host ratings is unset, expected 10s'),
    ({'traffic_policies': [{'host': 'reviews.legacy', 'connection_pool': {'max_connections': 100}}]},
     'istiod pushed no outbound cluster for host reviews.legacy'),
])
def test_resilience_not_pushed_is_named(expect, message):
    unmet = _proxy_config.unmet_expectations(resilience_proxy(), expect)
    assert any(message in u for u in unmet), unmet


def test_a_route_without_retry_policy_retries_zero_times():
    route = {'routes': [{'destinations': [{'subset': 'v1', 'weight': 100}]}], 'name': 'reviews:9080',
             'domains': ['reviews']}
    proxy = {'namespace': 'default', 'name': 'p', 'routes': [route]}
    assert _proxy_config.unmet_expectations(proxy, {'routes': [{'host': 'reviews', 'retries': {'attempts': 0}}]}) == []
    unmet = _proxy_config.unmet_expectations(proxy, {'routes': [{'host': 'reviews', 'timeout': '5s'}]})
    assert unmet == ['default/p: reviews:9080 has timeout none, expected 5s']


@pytest.mark.parametrize('text, seconds', [
    ('10s', 10), ('0.500s', 0.5), ('500ms', 0.5), ('1m30s', 90), ('1h', 3600), ('250us', 0.00025),
    ('10', None), ('ten seconds', None), ('', None), (None, None), ('1m 30s', None),
])
def test_duration_seconds(text, seconds):
    assert _proxy_config.duration_seconds(text) == seconds
