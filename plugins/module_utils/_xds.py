# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""Reading the configuration istiod pushes to a proxy, over xDS.

istiod computes each proxy's clusters, listeners and routes from the identity
the proxy presents when it connects (its node id and metadata). This module
presents the identity a pod's pilot-agent would present, built from the pod
object alone, asks istiod's plaintext ADS port (15010) for that pod's CDS, LDS
and RDS, and returns them as plain dicts in Envoy's JSON form (snake_case field
names, ``@type`` on typed configs), the same form as an Envoy ``config_dump``,
so that one summariser (``_proxy_config``) reads both sources.

grpcio and the Envoy API protos (the ``xds-protos`` package) are imported on
first use: ``import_xds()`` returns ``None`` or the ImportError's traceback.
"""

from __future__ import annotations

import importlib
import queue
import re
import traceback

TYPE_CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster'
TYPE_LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener'
TYPE_ROUTE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration'

# Modules whose messages istiod puts in typed configs that the summaries read.
# Typed configs of other types are kept as {'@type': ..., 'unparsed': True}.
_PROTO_MODULES = (
    'envoy.service.discovery.v3.ads_pb2_grpc',
    'envoy.service.discovery.v3.discovery_pb2',
    'envoy.config.core.v3.base_pb2',
    'envoy.config.cluster.v3.cluster_pb2',
    'envoy.config.listener.v3.listener_pb2',
    'envoy.config.route.v3.route_pb2',
    'envoy.extensions.upstreams.http.v3.http_protocol_options_pb2',
    'envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2',
    'envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2',
    'envoy.extensions.filters.http.router.v3.router_pb2',
    'envoy.extensions.transport_sockets.tls.v3.tls_pb2',
    'envoy.extensions.transport_sockets.raw_buffer.v3.raw_buffer_pb2',
    'envoy.extensions.matching.common_inputs.network.v3.network_inputs_pb2',
    'envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2',
    'envoy.extensions.filters.listener.original_dst.v3.original_dst_pb2',
    'envoy.extensions.filters.listener.http_inspector.v3.http_inspector_pb2',
    'xds.type.matcher.v3.matcher_pb2',
)

_MODULES = {}


def import_xds():
    """Import grpc and the Envoy protos; return None, or the ImportError's traceback."""
    if _MODULES:
        return None
    try:
        loaded = {'grpc': importlib.import_module('grpc')}
        for name in _PROTO_MODULES:
            loaded[name] = importlib.import_module(name)
        loaded['json_format'] = importlib.import_module('google.protobuf.json_format')
        loaded['struct_pb2'] = importlib.import_module('google.protobuf.struct_pb2')
        loaded['descriptor_pool'] = importlib.import_module('google.protobuf.descriptor_pool')
        loaded['symbol_database'] = importlib.import_module('google.protobuf.symbol_database')
    except ImportError:
        return traceback.format_exc()
    _MODULES.update(loaded)
    return None


class XdsError(Exception):
    """istiod could not be reached or did not answer."""


# --------------------------------------------------------------------------
# The node identity of a pod (pure functions)
# --------------------------------------------------------------------------

PROXY_CONTAINER = 'istio-proxy'
_VERSION_TAG = re.compile(r'^(\d+\.\d+\.\d+)')


def proxy_container(pod):
    """The pod's istio-proxy container (regular or native sidecar), or None."""
    spec = pod.get('spec') or {}
    for container in (spec.get('containers') or []) + (spec.get('initContainers') or []):
        if container.get('name') == PROXY_CONTAINER:
            return container
    return None


def proxy_type(pod):
    """``router`` for a gateway pod (its istio-proxy runs ``proxy router``), else ``sidecar``."""
    container = proxy_container(pod) or {}
    if 'router' in (container.get('args') or []):
        return 'router'
    return 'sidecar'


def _field_value(pod, path):
    """Value of a fieldRef path such as ``metadata.name`` or ``metadata.labels['app']``."""
    match = re.match(r"^metadata\.(labels|annotations)\['([^']+)'\]$", path)
    if match:
        return ((pod.get('metadata') or {}).get(match.group(1)) or {}).get(match.group(2))
    node = pod
    for part in path.split('.'):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, (str, int)) else None


def container_env(pod, container):
    """The container's environment as pilot-agent would see it: plain values and
    fieldRef values resolved from the pod (secret and config map references are
    left out: istiod's metadata never needs them)."""
    env = {}
    aliases = {'status.podIP': 'status.podIP', 'spec.nodeName': 'spec.nodeName',
               'spec.serviceAccountName': 'spec.serviceAccountName', 'status.hostIP': 'status.hostIP'}
    for item in container.get('env') or []:
        name = item.get('name')
        if 'value' in item:
            env[name] = str(item.get('value') or '')
            continue
        ref = (item.get('valueFrom') or {}).get('fieldRef')
        if ref:
            value = _field_value(pod, aliases.get(ref.get('fieldPath'), ref.get('fieldPath', '')))
            if value is not None:
                env[name] = str(value)
    return env


def proxy_istio_version(pod, fallback):
    """The Istio version of the pod's proxy image tag, else ``fallback``."""
    container = proxy_container(pod) or {}
    image = container.get('image') or ''
    tag = image.rsplit('@', 1)[0].rsplit(':', 1)[-1] if ':' in image.rsplit('/', 1)[-1] else ''
    match = _VERSION_TAG.match(tag)
    return match.group(1) if match else fallback


def node_identity(pod, cluster_domain='cluster.local', istio_version='', cluster_id='Kubernetes'):
    """``(node id, metadata dict)`` that the pod's pilot-agent would present to istiod."""
    meta = pod.get('metadata') or {}
    spec = pod.get('spec') or {}
    status = pod.get('status') or {}
    name, namespace = meta.get('name'), meta.get('namespace')
    ips = [entry.get('ip') for entry in status.get('podIPs') or [] if entry.get('ip')]
    if not ips and status.get('podIP'):
        ips = [status['podIP']]
    kind = proxy_type(pod)
    node_id = '%s~%s~%s.%s~%s.svc.%s' % (kind, ips[0] if ips else '', name, namespace, namespace, cluster_domain)
    container = proxy_container(pod) or {}
    env = container_env(pod, container)
    metadata = {}
    for key, value in env.items():
        if key.startswith('ISTIO_META_'):
            metadata[key[len('ISTIO_META_'):]] = value
    labels = {k: v for k, v in (meta.get('labels') or {}).items() if k != 'pod-template-hash'}
    metadata.update({
        'NAMESPACE': namespace,
        'NAME': name,
        'SERVICE_ACCOUNT': spec.get('serviceAccountName') or 'default',
        'LABELS': labels,
        'INSTANCE_IPS': ','.join(ips),
        'ISTIO_VERSION': proxy_istio_version(pod, istio_version),
        'NODE_NAME': spec.get('nodeName') or '',
    })
    metadata.setdefault('CLUSTER_ID', env.get('ISTIO_META_CLUSTER_ID') or cluster_id)
    metadata.setdefault('INTERCEPTION_MODE', 'REDIRECT')
    metadata.setdefault('MESH_ID', env.get('ISTIO_META_MESH_ID') or cluster_domain)
    annotations = meta.get('annotations') or {}
    if annotations:
        metadata['ANNOTATIONS'] = dict(annotations)
    return node_id, metadata


# --------------------------------------------------------------------------
# Protobuf to Envoy's JSON form
# --------------------------------------------------------------------------

def _known(type_url):
    name = type_url.rsplit('/', 1)[-1]
    try:
        _MODULES['descriptor_pool'].Default().FindMessageTypeByName(name)
        return True
    except KeyError:
        return False


def _scrub(message):
    """Replace, in place, every Any whose type is not imported by a Struct naming it,
    so that json_format can render the rest."""
    struct_pb2 = _MODULES['struct_pb2']
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            entry_value = field.message_type.fields_by_name['value']
            if entry_value.message_type is not None:
                for item in value.values():
                    _scrub_one(item, struct_pb2)
            continue
        repeated = field.is_repeated if hasattr(field, 'is_repeated') else field.label == field.LABEL_REPEATED
        items = value if repeated else [value]
        for item in items:
            _scrub_one(item, struct_pb2)


def _scrub_one(item, struct_pb2):
    if item.DESCRIPTOR.full_name != 'google.protobuf.Any':
        _scrub(item)
        return
    if not item.type_url:
        return
    if not _known(item.type_url):
        placeholder = struct_pb2.Struct()
        placeholder.update({'unparsed': True, 'type': item.type_url})
        item.Pack(placeholder)
        return
    name = item.type_url.rsplit('/', 1)[-1]
    cls = _MODULES['symbol_database'].Default().GetSymbol(name)
    inner = cls()
    item.Unpack(inner)
    _scrub(inner)
    item.Pack(inner)


def _unwrap_placeholders(node):
    """Turn the Struct placeholders of _scrub back into {'@type': url, 'unparsed': True}."""
    if isinstance(node, dict):
        if node.get('@type') == 'type.googleapis.com/google.protobuf.Struct' and \
                isinstance(node.get('value'), dict) and node['value'].get('unparsed') is True:
            return {'@type': node['value'].get('type'), 'unparsed': True}
        return {k: _unwrap_placeholders(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unwrap_placeholders(v) for v in node]
    return node


def any_to_dict(any_message):
    """An xDS resource (an Any) as a dict in Envoy's JSON form."""
    name = any_message.type_url.rsplit('/', 1)[-1]
    cls = _MODULES['symbol_database'].Default().GetSymbol(name)
    message = cls()
    any_message.Unpack(message)
    _scrub(message)
    data = _MODULES['json_format'].MessageToDict(message, preserving_proto_field_name=True)
    return _unwrap_placeholders(data)


# --------------------------------------------------------------------------
# The ADS client
# --------------------------------------------------------------------------

def _node(node_id, metadata):
    base = _MODULES['envoy.config.core.v3.base_pb2']
    node = base.Node(id=node_id)
    node.metadata.update(metadata)
    return node


class AdsSession:
    """One ADS stream to istiod, for one proxy identity."""

    def __init__(self, address, node_id, metadata, timeout):
        grpc = _MODULES['grpc']
        self.address = address
        self.timeout = timeout
        self.node = _node(node_id, metadata)
        self.channel = grpc.insecure_channel(address)
        stub = _MODULES['envoy.service.discovery.v3.ads_pb2_grpc'].AggregatedDiscoveryServiceStub(self.channel)
        self.requests = queue.Queue()
        self.responses = stub.StreamAggregatedResources(self._iterate(), timeout=timeout)
        self.first = True

    def _iterate(self):
        while True:
            item = self.requests.get()
            if item is None:
                return
            yield item

    def fetch(self, type_url, names=()):
        """The resources of one type (as dicts), asking for ``names`` (all when empty)."""
        discovery = _MODULES['envoy.service.discovery.v3.discovery_pb2']
        request = discovery.DiscoveryRequest(type_url=type_url, resource_names=list(names))
        if self.first:
            request.node.CopyFrom(self.node)
            self.first = False
        self.requests.put(request)
        grpc = _MODULES['grpc']
        try:
            for response in self.responses:
                if response.type_url == type_url:
                    return [any_to_dict(resource) for resource in response.resources]
        except grpc.RpcError as exc:
            raise XdsError(_rpc_error_text(exc, self.address))
        raise XdsError('istiod at %s closed the stream before sending %s' % (self.address, type_url.rsplit('.', 1)[-1]))

    def close(self):
        self.requests.put(None)
        try:
            self.responses.cancel()
        except Exception:  # pylint: disable=broad-except
            pass
        self.channel.close()


def _rpc_error_text(exc, address):
    code = exc.code() if hasattr(exc, 'code') else None
    details = exc.details() if hasattr(exc, 'details') else str(exc)
    name = getattr(code, 'name', str(code))
    if name == 'UNAVAILABLE':
        return 'istiod is not reachable at %s (%s)' % (address, details)
    if name == 'DEADLINE_EXCEEDED':
        return 'istiod at %s did not answer in time' % address
    return 'istiod at %s answered %s: %s' % (address, name, details)


def route_names(listeners):
    """Names of the route configurations the listeners' HTTP connection managers refer to (RDS)."""
    names = []
    for listener in listeners:
        for chain in listener.get('filter_chains') or []:
            for flt in chain.get('filters') or []:
                config = flt.get('typed_config') or {}
                rds = config.get('rds') or {}
                name = rds.get('route_config_name')
                if name and name not in names:
                    names.append(name)
    return names


def fetch_proxy_config(address, node_id, metadata, timeout=10):
    """``{'clusters': [...], 'listeners': [...], 'routes': [...]}`` istiod computes for the node."""
    session = AdsSession(address, node_id, metadata, timeout)
    try:
        clusters = session.fetch(TYPE_CLUSTER)
        listeners = session.fetch(TYPE_LISTENER)
        names = route_names(listeners)
        routes = session.fetch(TYPE_ROUTE, names) if names else []
    finally:
        session.close()
    return {'clusters': clusters, 'listeners': listeners, 'routes': routes}


def from_config_dump(dump):
    """The same ``{'clusters', 'listeners', 'routes'}`` from an Envoy ``/config_dump`` (JSON dict)."""
    out = {'clusters': [], 'listeners': [], 'routes': []}
    for config in dump.get('configs') or []:
        kind = (config.get('@type') or '').rsplit('.', 1)[-1]
        if kind == 'ClustersConfigDump':
            for item in (config.get('static_clusters') or []) + (config.get('dynamic_active_clusters') or []):
                if item.get('cluster'):
                    out['clusters'].append(item['cluster'])
        elif kind == 'ListenersConfigDump':
            for item in config.get('static_listeners') or []:
                if item.get('listener'):
                    out['listeners'].append(item['listener'])
            for item in config.get('dynamic_listeners') or []:
                listener = (item.get('active_state') or {}).get('listener')
                if listener:
                    out['listeners'].append(listener)
        elif kind == 'RoutesConfigDump':
            for item in (config.get('static_route_configs') or []) + (config.get('dynamic_route_configs') or []):
                if item.get('route_config'):
                    out['routes'].append(item['route_config'])
    return out
