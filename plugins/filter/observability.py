# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The observability role's decisions: which of Istio's addons to install, the
changes it makes to upstream's manifests (samples/addons/*.yaml of the pinned
Istio version) to make them safe, the input checks, the access summary and
the Kiali graph summary. Pure data in, data out: no cluster, no templating."""

from __future__ import annotations

import configparser
import copy
import io
import ipaddress
import re
from collections.abc import Mapping

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.module_utils._service_proxy import prometheus_targets
from ansible_collections.servicemesh.istio.plugins.plugin_utils._data import as_dict as _dict, as_list as _list, plain as _plain

ADDONS = ('prometheus', 'grafana', 'kiali', 'jaeger', 'loki')
# The tools a person opens: addon -> (Service, port, health path, login of its own).
TOOLS = {
    'prometheus': {'service': 'prometheus', 'port': 9090, 'login': False},
    'grafana': {'service': 'grafana', 'port': 3000, 'login': True},
    'kiali': {'service': 'kiali', 'port': 20001, 'login': True},
    'jaeger': {'service': 'tracing', 'port': 80, 'login': False},
}
# The main container of each addon's Deployment (or StatefulSet).
MAIN_CONTAINER = {'prometheus': 'prometheus-server', 'grafana': 'grafana', 'kiali': 'kiali',
                  'jaeger': 'jaeger', 'loki': 'loki'}
EXPOSURES = ('none', 'gateway', 'loadbalancer')
# Persistent storage an addon may get (observability_storage): the upstream
# volume it replaces, and the group its process runs as (the volume's fsGroup).
STORAGE = {'prometheus': {'volume': 'storage-volume', 'fs_group': 65534},
           'grafana': {'volume': 'storage', 'fs_group': 472}}
QUANTITY = re.compile(r'^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')
# What a user reaching each tool at its exposed URL asks for, and what
# answers count: Prometheus and Jaeger have no login and answer; Grafana
# with anonymous access off sends a visitor to its login page (302 to
# /login); Kiali with the token strategy answers its API 401 without a
# session (an anonymous Kiali, forced, answers 200).
PROBES = {
    'prometheus': {'path': '/-/ready', 'status': [200], 'says': 'answers (no login of its own)'},
    'grafana': {'path': '/', 'status': [302], 'says': 'asks for a login (302 to /login)'},
    'kiali': {'path': '/kiali/api/namespaces', 'status': [401], 'says': 'asks for a login (401 without a session)'},
    'jaeger': {'path': '/jaeger/api/services', 'status': [200], 'says': 'answers (no login of its own)'},
}
KIALI_STRATEGIES = ('token', 'anonymous')
KIALI_SIGNING_KEY_MOUNT = '/kiali-override-secrets/login-token-signing-key'
DNS_NAME = re.compile(r'^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')
DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')
NAMESPACED_KINDS_WITHOUT_NAMESPACE = ('ClusterRole', 'ClusterRoleBinding', 'Namespace',
                                      'CustomResourceDefinition', 'MutatingWebhookConfiguration',
                                      'ValidatingWebhookConfiguration')


# --- inputs -----------------------------------------------------------------

def _cidr_ok(text):
    try:
        ipaddress.ip_network(str(text), strict=True)
    except ValueError:
        return False
    return '/' in str(text)


def observability_input_errors(cfg):
    """The problems of the role's inputs, each naming its variable; [] when fine.

    ``cfg`` holds the role's variables without their ``observability_`` prefix."""
    cfg = _dict(cfg)
    errors = []
    addons = cfg.get('addons')
    if not isinstance(addons, list) or not all(isinstance(a, str) for a in addons):
        errors.append('observability_addons must be a list of addon names (got %r).' % (addons,))
        addons = []
    unknown = [a for a in addons if a not in ADDONS]
    if unknown:
        errors.append('observability_addons names unknown addons %s; the addons of Istio are %s.'
                      % (', '.join(unknown), ', '.join(ADDONS)))
    exposure = cfg.get('exposure', 'none')
    if exposure not in EXPOSURES:
        errors.append("observability_exposure must be one of %s (got '%s')." % (', '.join(EXPOSURES), exposure))
    strategy = cfg.get('kiali_auth_strategy', 'token')
    if strategy not in KIALI_STRATEGIES:
        errors.append("observability_kiali_auth_strategy must be token or anonymous (got '%s')." % strategy)
    ranges = cfg.get('allowed_source_ranges') or []
    if not isinstance(ranges, list):
        errors.append('observability_allowed_source_ranges must be a list of CIDRs (got %r).' % (ranges,))
        ranges = []
    bad = [str(r) for r in ranges if not _cidr_ok(r)]
    if bad:
        errors.append('observability_allowed_source_ranges has malformed CIDRs: %s (write them as 203.0.113.0/24, '
                      'with no host bits set).' % ', '.join(bad))
    jwt_issuer = cfg.get('jwt_issuer') or ''
    if jwt_issuer and not cfg.get('jwt_jwks_uri'):
        errors.append('observability_jwt_issuer is set but observability_jwt_jwks_uri is empty: the gateway needs '
                      "the issuer's JWKS URL to check the tokens.")
    allow_public = bool(cfg.get('allow_public'))
    if exposure == 'loadbalancer' and not ranges and not allow_public:
        errors.append('observability_exposure is loadbalancer but observability_allowed_source_ranges is empty: '
                      'the Services would be open to the whole Internet. Give the CIDRs allowed to connect '
                      '(loadBalancerSourceRanges), or set observability_allow_public: true to accept it.')
    if exposure == 'gateway':
        domain = cfg.get('domain') or ''
        if not domain:
            errors.append('observability_exposure is gateway but observability_domain is empty: each tool is '
                          'served at <tool>.<observability_domain>.')
        elif not DNS_NAME.match(str(domain)):
            errors.append("observability_domain '%s' is not a DNS name." % domain)
        if not ranges and not jwt_issuer and not allow_public:
            errors.append('observability_exposure is gateway but neither observability_allowed_source_ranges nor '
                          'observability_jwt_issuer restricts access: Prometheus and Jaeger have no login. Give '
                          'one of them, or set observability_allow_public: true to accept it.')
        if not cfg.get('cert_issuer'):
            errors.append('observability_exposure is gateway but observability_cert_issuer is empty: name the '
                          'cert-manager ClusterIssuer that signs the certificate of the tools\' hosts.')
    if (strategy == 'anonymous' and exposure in ('gateway', 'loadbalancer') and 'kiali' in addons
            and not cfg.get('kiali_anonymous_exposed')):
        errors.append('observability_kiali_auth_strategy is anonymous and observability_exposure is %s: anyone who '
                      'reaches Kiali could change the mesh. Use the token strategy, keep the exposure none, or set '
                      'observability_kiali_anonymous_exposed: true to force it.' % exposure)
    for name in ('namespace',):
        value = cfg.get(name) or ''
        if not DNS_LABEL.match(str(value)):
            errors.append("observability_%s '%s' is not a valid namespace name." % (name, value))
    for name in ('grafana_admin_secret', 'kiali_signing_key_secret'):
        value = cfg.get(name) or ''
        if not DNS_NAME.match(str(value)):
            errors.append("observability_%s_name '%s' is not a valid Secret name." % (name, value))
    url = cfg.get('prometheus_url') or ''
    if url and not re.match(r'^https?://[^/\s]+', str(url)):
        errors.append("observability_prometheus_url '%s' must be an http(s) URL." % url)
    storage = cfg.get('storage') or {}
    if not isinstance(storage, Mapping):
        errors.append('observability_storage must be a mapping by addon (got %r).' % (storage,))
        storage = {}
    for addon, want in storage.items():
        if addon not in STORAGE:
            errors.append('observability_storage names %s; only %s keep data on a volume.'
                          % (addon, ' and '.join(STORAGE)))
            continue
        want = want if isinstance(want, Mapping) else {}
        stray = sorted(set(want) - {'size', 'storage_class'})
        if not want.get('size') or not QUANTITY.match(str(want['size'])) or stray:
            errors.append("observability_storage.%s must be {size: <quantity such as 10Gi>, storage_class: "
                          "<name, optional>} (got %r)." % (addon, _plain(want) if want else storage[addon]))
        elif want.get('storage_class') and not DNS_NAME.match(str(want['storage_class'])):
            errors.append("observability_storage.%s.storage_class '%s' is not a StorageClass name."
                          % (addon, want['storage_class']))
    source = cfg.get('check_source_address') or ''
    if source:
        try:
            ipaddress.ip_address(str(source))
        except ValueError:
            errors.append("observability_check_source_address '%s' is not an IP address." % source)
    for name in ('images', 'resources'):
        value = cfg.get(name) or {}
        if not isinstance(value, Mapping):
            errors.append('observability_%s must be a mapping by addon (got %r).' % (name, value))
            continue
        stray = [k for k in value if k not in ADDONS]
        if stray:
            errors.append('observability_%s names unknown addons %s.' % (name, ', '.join(map(str, stray))))
    return errors


def observability_addons_to_install(addons, prometheus_url=''):
    """The addons to apply, in a stable order: the external Prometheus replaces the addon's."""
    wanted = [a for a in ADDONS if a in _list(addons)]
    if prometheus_url:
        wanted = [a for a in wanted if a != 'prometheus']
    return wanted


# --- manifests ----------------------------------------------------------------

def _replace_registry(image, registry):
    """docker.io/grafana/grafana:12.0.1 with registry r -> r/grafana/grafana:12.0.1."""
    if not registry:
        return image
    first, sep, rest = image.partition('/')
    if sep and ('.' in first or ':' in first or first == 'localhost'):
        image = rest
    return '%s/%s' % (registry.rstrip('/'), image)


def _set_ini(text, section, key, value):
    """Set one key of an ini text (Grafana's grafana.ini), keeping the rest."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(text or '')
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, key, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _workload_spec(doc):
    return _dict(_dict(_dict(doc.get('spec')).get('template')).get('spec'))


def _env_set(container, name, value=None, secret=None):
    """Set (or with value and secret None, remove) one env entry of a container."""
    env = [e for e in _list(container.get('env')) if _dict(e).get('name') != name]
    if secret is not None:
        env.append({'name': name, 'valueFrom': {'secretKeyRef': {'name': secret[0], 'key': secret[1]}}})
    elif value is not None:
        env.append({'name': name, 'value': value})
    container['env'] = env


def _kiali_config(text, opts):
    conf = yaml.safe_load(text or '') or {}
    auth = conf.setdefault('auth', {})
    auth['strategy'] = opts['kiali_auth_strategy']
    # The key lives in a Secret, mounted where Kiali reads override secrets.
    conf.setdefault('login_token', {})['signing_key'] = 'secret:%s:value.txt' % opts['kiali_signing_key_secret']
    ns = opts['namespace']
    conf.setdefault('istio_namespace', ns)
    conf['istio_namespace'] = ns
    conf.setdefault('deployment', {})['namespace'] = ns
    ext = conf.setdefault('external_services', {})
    ext.setdefault('istio', {})['root_namespace'] = opts.get('istio_namespace') or ns
    ext.setdefault('prometheus', {})['url'] = opts['prometheus_url_effective']
    if 'grafana' in opts.get('installed', []):
        ext.setdefault('grafana', {}).update({'enabled': True,
                                              'internal_url': 'http://grafana.%s:3000' % ns})
    if 'jaeger' in opts.get('installed', []):
        ext.setdefault('tracing', {}).update({'enabled': True, 'provider': 'jaeger',
                                              'internal_url': 'http://tracing.%s:80/jaeger' % ns,
                                              'use_grpc': False})
    return yaml.safe_dump(conf, sort_keys=False)


def _grafana_datasources(text, opts):
    conf = yaml.safe_load(text or '') or {}
    for source in _list(conf.get('datasources')):
        if _dict(source).get('type') == 'prometheus':
            source['url'] = opts['prometheus_url_effective']
        elif _dict(source).get('type') == 'loki':
            source['url'] = 'http://loki.%s:3100' % opts['namespace']
    if 'loki' not in opts.get('installed', []):
        conf['datasources'] = [s for s in _list(conf.get('datasources')) if _dict(s).get('type') != 'loki']
    return yaml.safe_dump(conf, sort_keys=False)


def _transform_doc(doc, addon, opts):
    doc = copy.deepcopy(doc)
    kind = doc.get('kind')
    meta = doc.setdefault('metadata', {})
    ns = opts['namespace']
    if kind not in NAMESPACED_KINDS_WITHOUT_NAMESPACE:
        meta['namespace'] = ns
    else:
        meta.pop('namespace', None)
    labels = meta.setdefault('labels', None) or {}
    labels['app.kubernetes.io/managed-by'] = 'servicemesh.istio.observability'
    meta['labels'] = labels
    if kind in ('ClusterRoleBinding', 'RoleBinding'):
        for subject in _list(doc.get('subjects')):
            if _dict(subject).get('kind') == 'ServiceAccount':
                subject['namespace'] = ns
    if kind in ('Deployment', 'StatefulSet'):
        spec = _workload_spec(doc)
        containers = _list(spec.get('containers'))
        for container in containers + _list(spec.get('initContainers')):
            container['image'] = _replace_registry(container.get('image', ''), opts.get('registry'))
        main = next((c for c in containers if c.get('name') == MAIN_CONTAINER.get(addon)), None)
        if main is not None:
            if _dict(opts.get('images')).get(addon):
                main['image'] = opts['images'][addon]
            if _dict(opts.get('resources')).get(addon) is not None:
                main['resources'] = copy.deepcopy(opts['resources'][addon])
            if addon == 'prometheus' and opts.get('prometheus_retention'):
                main['args'] = [a for a in _list(main.get('args'))
                                if not str(a).startswith('--storage.tsdb.retention.time=')]
                main['args'].append('--storage.tsdb.retention.time=%s' % opts['prometheus_retention'])
            if addon == 'grafana':
                _env_set(main, 'GF_AUTH_ANONYMOUS_ENABLED', 'false')
                _env_set(main, 'GF_AUTH_ANONYMOUS_ORG_ROLE')
                _env_set(main, 'GF_SECURITY_ADMIN_USER', secret=(opts['grafana_admin_secret'], 'admin-user'))
                _env_set(main, 'GF_SECURITY_ADMIN_PASSWORD',
                         secret=(opts['grafana_admin_secret'], 'admin-password'))
                _env_set(main, 'GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION', 'false')
            if addon == 'kiali':
                volumes = [v for v in _list(spec.get('volumes')) if _dict(v).get('name') != 'login-token-signing-key']
                volumes.append({'name': 'login-token-signing-key',
                                'secret': {'secretName': opts['kiali_signing_key_secret'],
                                           'items': [{'key': 'value.txt', 'path': 'value.txt'}]}})
                spec['volumes'] = volumes
                mounts = [m for m in _list(main.get('volumeMounts'))
                          if _dict(m).get('name') != 'login-token-signing-key']
                mounts.append({'name': 'login-token-signing-key', 'mountPath': KIALI_SIGNING_KEY_MOUNT,
                               'readOnly': True})
                main['volumeMounts'] = mounts
    if kind == 'Deployment' and addon in STORAGE and meta.get('name') == addon:
        if addon in _dict(opts.get('storage')):
            _persistent_storage(doc, addon, opts)
        else:
            _ephemeral_storage(doc, addon)
    if kind == 'ConfigMap':
        data = doc.get('data') or {}
        if addon == 'kiali' and 'config.yaml' in data:
            data['config.yaml'] = _kiali_config(data['config.yaml'], opts)
        if addon == 'grafana' and 'grafana.ini' in data:
            data['grafana.ini'] = _set_ini(data['grafana.ini'], 'auth.anonymous', 'enabled', 'false')
        if addon == 'grafana' and 'datasources.yaml' in data:
            data['datasources.yaml'] = _grafana_datasources(data['datasources.yaml'], opts)
    if kind == 'Service' and addon in TOOLS and meta.get('name') == TOOLS[addon]['service']:
        spec = doc.setdefault('spec', {})
        # null removes ranges a previous run set (the apply is a merge patch;
        # the API server refuses them on a ClusterIP Service).
        if opts.get('exposure') == 'loadbalancer':
            spec['type'] = 'LoadBalancer'
            spec['loadBalancerSourceRanges'] = list(opts.get('allowed_source_ranges') or []) or None
        else:
            spec['type'] = 'ClusterIP'
            spec['loadBalancerSourceRanges'] = None
    return doc


def _storage_claim_name(addon):
    return '%s-storage' % addon


def _persistent_storage(doc, addon, opts):
    """The addon's data volume (upstream's emptyDir) on the PersistentVolumeClaim
    observability_addon_manifests adds; Recreate, as one ReadWriteOnce volume
    cannot be mounted by the old and the new pod on two nodes; the volume's
    group the one the process runs as, so that it can write there."""
    spec = _workload_spec(doc)
    name = STORAGE[addon]['volume']
    volumes = [v for v in _list(spec.get('volumes')) if _dict(v).get('name') != name]
    # null: the patch drops the emptyDir of a run without storage (one volume, one source).
    volumes.append({'name': name, 'persistentVolumeClaim': {'claimName': _storage_claim_name(addon)}, 'emptyDir': None})
    spec['volumes'] = volumes
    # null: the merge patch drops a RollingUpdate's parameters (refused with Recreate).
    doc['spec']['strategy'] = {'type': 'Recreate', 'rollingUpdate': None}
    security = spec.setdefault('securityContext', None) or {}
    security.setdefault('fsGroup', STORAGE[addon]['fs_group'])
    spec['securityContext'] = security


def _ephemeral_storage(doc, addon):
    """Upstream's emptyDir, with nulls that undo what a run with storage
    patched in (the claim as the volume's source, and its fsGroup unless
    upstream sets one); the claim itself is kept (teardown purges it)."""
    spec = _workload_spec(doc)
    for volume in _list(spec.get('volumes')):
        if _dict(volume).get('name') == STORAGE[addon]['volume'] and 'emptyDir' in volume:
            volume['persistentVolumeClaim'] = None
    if 'fsGroup' not in _dict(spec.get('securityContext')):
        spec['securityContext'] = dict(_dict(spec.get('securityContext')), fsGroup=None)


def _storage_claim(addon, opts):
    want = _dict(_dict(opts.get('storage')).get(addon))
    claim = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
             'metadata': {'name': _storage_claim_name(addon), 'namespace': opts['namespace'],
                          'labels': {'app': addon, 'app.kubernetes.io/managed-by': 'servicemesh.istio.observability'}},
             'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': str(want['size'])}}}}
    if want.get('storage_class'):
        claim['spec']['storageClassName'] = want['storage_class']
    return claim


_OPTION_DEFAULTS = {
    'namespace': 'istio-system', 'istio_namespace': '', 'registry': '', 'images': {}, 'resources': {},
    'prometheus_url': '', 'prometheus_retention': '', 'kiali_auth_strategy': 'token',
    'kiali_signing_key_secret': 'kiali-signing-key', 'grafana_admin_secret': 'grafana-admin',
    'exposure': 'none', 'allowed_source_ranges': [], 'installed': [], 'storage': {},
}


def observability_addon_manifests(docs, addon, options):
    """Upstream's manifest of ``addon`` (its documents, as from_yaml_all gives
    them) made safe and set to the role's options."""
    if addon not in ADDONS:
        raise AnsibleFilterError('observability_addon_manifests: unknown addon %r (known: %s)'
                                 % (addon, ', '.join(ADDONS)))
    opts = dict(_OPTION_DEFAULTS)
    opts.update({k: v for k, v in _plain(_dict(options)).items() if v is not None})
    opts['prometheus_url_effective'] = opts['prometheus_url'] or 'http://prometheus.%s:9090' % opts['namespace']
    out = []
    for doc in _list(list(docs) if not isinstance(docs, list) else docs):
        if not isinstance(doc, Mapping) or not doc.get('kind'):
            continue
        out.append(_transform_doc(_plain(doc), addon, opts))
    if not out:
        raise AnsibleFilterError('observability_addon_manifests: the manifest of %s has no Kubernetes object' % addon)
    if addon in _dict(opts.get('storage')):
        if not any(d.get('kind') == 'Deployment' and d['metadata'].get('name') == addon for d in out):
            raise AnsibleFilterError('observability_addon_manifests: observability_storage.%s, but the manifest has '
                                     'no Deployment %s whose volume %s could be persistent'
                                     % (addon, addon, STORAGE[addon]['volume']))
        # The claim before the Deployment that mounts it.
        out.insert(0, _storage_claim(addon, opts))
    return out


# --- what the run leaves --------------------------------------------------------

def observability_access(installed, options):
    """Per tool: how to open it (URL or port-forward command), its auth mode and
    where a generated credential lives (a Secret's name, never its value)."""
    opts = dict(_OPTION_DEFAULTS)
    opts.update({k: v for k, v in _dict(options).items() if v is not None})
    ns = opts['namespace']
    out = {}
    for tool, info in TOOLS.items():
        if tool not in _list(installed):
            continue
        entry = {'service': '%s/%s' % (ns, info['service'])}
        local = {'prometheus': 9090, 'grafana': 3000, 'kiali': 20001, 'jaeger': 16686}[tool]
        path = '/kiali' if tool == 'kiali' else ''
        if opts['exposure'] == 'gateway':
            entry['url'] = 'https://%s.%s/' % (tool, opts.get('domain', ''))
            restricted = bool(opts.get('allowed_source_ranges') or opts.get('jwt_issuer'))
        elif opts['exposure'] == 'loadbalancer':
            address = _dict(opts.get('addresses')).get(tool) or '<pending>'
            entry['url'] = 'http://%s:%s%s/' % (address, info['port'], path)
            restricted = bool(opts.get('allowed_source_ranges'))
        else:
            entry['url'] = 'http://localhost:%s%s/' % (local, path)
            entry['port_forward'] = 'kubectl -n %s port-forward svc/%s %s:%s' % (
                ns, info['service'], local, info['port'])
            restricted = True
        if tool == 'kiali':
            entry['auth'] = ('Kubernetes token (Kiali token strategy)' if opts['kiali_auth_strategy'] == 'token'
                             else 'none (Kiali anonymous strategy)')
            entry['signing_key_secret'] = '%s/%s' % (ns, opts['kiali_signing_key_secret'])
        elif tool == 'grafana':
            entry['auth'] = 'Grafana login (anonymous access off)'
            entry['admin_secret'] = '%s/%s' % (ns, opts['grafana_admin_secret'])
        else:
            entry['auth'] = 'none of its own'
        if opts['exposure'] != 'none':
            entry['restricted_to'] = (list(opts.get('allowed_source_ranges') or [])
                                      + (['JWT from %s' % opts['jwt_issuer']] if opts.get('jwt_issuer')
                                         and opts['exposure'] == 'gateway' else []))
        if _dict(opts.get('checked')).get(tool):
            seen = opts['checked'][tool]
            entry['exposure_check'] = {k: seen.get(k) for k in ('url', 'source', 'answered', 'expected', 'ok')}
        entry['reachable_without_login'] = (not restricted and (not info['login'] or (
            tool == 'kiali' and opts['kiali_auth_strategy'] == 'anonymous')))
        out[tool] = entry
    return out


def observability_graph_summary(graph, expected_edges=None):
    """What Kiali's graph (``/kiali/api/namespaces/graph``, versionedApp) shows:
    apps with their versions, the edges between apps, and which of
    ``expected_edges`` ("app->app") are missing."""
    graph = _dict(graph)
    elements = _dict(graph.get('elements'))
    nodes = {}
    apps = {}
    for node in _list(elements.get('nodes')):
        data = _dict(_dict(node).get('data'))
        app = data.get('app') or data.get('service') or data.get('workload')
        if not app or data.get('isBox'):
            continue
        nodes[data.get('id')] = app
        versions = apps.setdefault(app, [])
        if data.get('version') and data['version'] not in versions:
            versions.append(data['version'])
    edges = []
    for edge in _list(elements.get('edges')):
        data = _dict(_dict(edge).get('data'))
        source, target = nodes.get(data.get('source')), nodes.get(data.get('target'))
        if source and target:
            name = '%s->%s' % (source, target)
            if name not in edges:
                edges.append(name)
    missing = [e for e in _list(expected_edges) if e not in edges]
    return {'apps': {k: sorted(v) for k, v in sorted(apps.items())}, 'edges': sorted(edges), 'missing_edges': missing}


def observability_istio_targets(targets):
    """Istio's scrape targets among Prometheus' active targets
    (``/api/v1/targets`` answer): istiod's and the proxies' (``envoy-stats``)
    jobs, and pods labelled ``app=istiod``; with the ones that are up and the
    ones that are not, each with its scrape URL and last error. The same
    judgement as service_proxy_request's ``expect_targets_up``."""
    found = prometheus_targets(_plain(targets), ('istiod',))
    return {'targets': found['targets'], 'up': found['up'], 'down': found['down'],
            'istiod_up': not found['missing']}


# --- requests at the exposed URLs -----------------------------------------------

def observability_exposure_checks(installed, options):
    """Per tool, the request the role makes at its exposed URL as a user would
    (servicemesh.istio.service_proxy_request's ``external``, ``path`` and
    ``status``): at the gateway's address with the tool's host name over
    HTTPS, or at the tool's LoadBalancer address over HTTP. From inside the
    allowed ranges each tool must give its PROBES answer; from outside, the
    gateway's policy answers 403 and a load balancer drops the connection (no
    answer). ``options``: the role's config plus ``gateway_address``,
    ``addresses`` (LoadBalancer address by tool), ``ca_bundle`` and
    ``check_source_address``."""
    opts = dict(_OPTION_DEFAULTS)
    opts.update({k: v for k, v in _dict(options).items() if v is not None})
    exposure = opts['exposure']
    if exposure not in ('gateway', 'loadbalancer'):
        return []
    ranges = list(opts.get('allowed_source_ranges') or [])
    out = []
    for tool, info in TOOLS.items():
        if tool not in _list(installed):
            continue
        probe = dict(PROBES[tool])
        if tool == 'kiali' and opts['kiali_auth_strategy'] == 'anonymous':
            probe.update(status=[200], says='answers without a login (anonymous Kiali, observability_kiali_anonymous_exposed)')
        if exposure == 'gateway':
            host = '%s.%s' % (tool, opts.get('domain', ''))
            external = {'host': host, 'address': opts.get('gateway_address') or host, 'scheme': 'https', 'port': 443}
            if opts.get('ca_bundle'):
                external['ca_path'] = opts['ca_bundle']
            refused, refusal = [403], "refused (403 from the gateway's AuthorizationPolicy)"
            url = 'https://%s%s' % (host, probe['path'])
        else:
            address = _dict(opts.get('addresses')).get(tool) or ''
            external = {'host': address, 'address': address, 'scheme': 'http', 'port': info['port']}
            refused, refusal = [-1], 'refused (no answer: the load balancer drops sources outside loadBalancerSourceRanges)'
            url = 'http://%s:%s%s' % (address, info['port'], probe['path'])
        if opts.get('check_source_address'):
            external['source_address'] = opts['check_source_address']
        check = {'tool': tool, 'url': url, 'path': probe['path'], 'external': external, 'login': info['login']}
        if ranges:
            external.update(source_ranges=ranges, status_outside=refused)
            check.update(status=probe['status'], inside=probe['says'], outside=refusal)
        elif exposure == 'gateway' and opts.get('jwt_issuer'):
            # Only a JWT of the issuer admits; the role sends none.
            check.update(status=refused, inside=refusal, outside=refusal)
        else:  # observability_allow_public: nothing restricts
            check.update(status=probe['status'], inside=probe['says'], outside=probe['says'])
        out.append(check)
    return out


def observability_exposure_verdict(results):
    """What each tool answered at its exposed URL (the registered loop of
    service_proxy_request over observability_exposure_checks), judged: by
    tool, the URL, the source the answer depended on, what came back and
    whether it is what that source must get. Grafana's 302 must send to its
    login page."""
    out = {}
    for result in _list(_dict(results).get('results') if isinstance(results, Mapping) else results):
        result = _dict(result)
        check = _dict(result.get('item'))
        tool = check.get('tool')
        if not tool:
            continue
        status = result.get('status', -1)
        inside = result.get('source_inside', True)
        headers = _dict(result.get('headers'))
        answered = 'no answer (%s)' % (result.get('error') or result.get('msg') or 'connection failed') \
            if status == -1 else 'HTTP %s' % status
        if status in (301, 302, 303, 307, 308) and headers.get('location'):
            answered += ' to %s' % headers['location']
        expected = check.get('inside') if inside else check.get('outside')
        ok = not result.get('failed') and (inside and status in _list(check.get('status'))
                                           or not inside and status in _list(_dict(check.get('external')).get('status_outside')))
        if ok and tool == 'grafana' and status == 302 and '/login' not in str(headers.get('location', '')):
            ok = False
            expected = 'asks for a login (302 to /login), not a redirect elsewhere'
        ranges = _list(_dict(check.get('external')).get('source_ranges'))
        source = result.get('source') or ''
        side = (' (%s %s)' % ('inside' if inside else 'outside', ', '.join(ranges))) if ranges else ''
        where = 'from %s%s' % (source or 'this controller', side)
        out[tool] = {'url': check.get('url'), 'source': source, 'source_inside': bool(inside), 'answered': answered,
                     'expected': expected, 'ok': bool(ok),
                     'message': '%s: %s %s %s; expected: %s.' % (
                         tool, check.get('url'), where, 'gave ' + answered if status == -1 else 'answered ' + answered,
                         expected)}
    return out


def observability_stale_objects(found, wanted):
    """The objects of ``found`` (what the role's label finds) that ``wanted``
    (what this run applies) does not name, by apiVersion, kind, namespace and
    name: what a run with another exposure, or fewer tools, left behind. Each
    as a reference (apiVersion, kind, metadata.name and namespace) to delete."""
    def key(obj):
        obj = _dict(obj)
        meta = _dict(obj.get('metadata'))
        return (obj.get('apiVersion'), obj.get('kind'), meta.get('namespace', ''), meta.get('name'))

    keep = {key(w) for w in _list(wanted) if isinstance(w, Mapping)}
    out = []
    for obj in _list(found):
        if not isinstance(obj, Mapping) or key(obj) in keep or not key(obj)[3]:
            continue
        ref = {'apiVersion': obj['apiVersion'], 'kind': obj['kind'], 'metadata': {'name': obj['metadata']['name']}}
        if obj['metadata'].get('namespace'):
            ref['metadata']['namespace'] = obj['metadata']['namespace']
        out.append(ref)
    return out


class FilterModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio filters of the observability role."""

    def filters(self):
        return {
            'observability_input_errors': observability_input_errors,
            'observability_addons_to_install': observability_addons_to_install,
            'observability_addon_manifests': observability_addon_manifests,
            'observability_access': observability_access,
            'observability_graph_summary': observability_graph_summary,
            'observability_istio_targets': observability_istio_targets,
            'observability_exposure_checks': observability_exposure_checks,
            'observability_exposure_verdict': observability_exposure_verdict,
            'observability_stale_objects': observability_stale_objects,
        }
