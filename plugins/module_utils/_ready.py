# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules and action plugins of
# servicemesh.istio. It is not part of the collection's public API and may
# change without notice.
"""Reading Kubernetes objects as plain dicts and judging whether they are
ready: the logic behind the ``wait_for_ready`` and ``preflight_info``
modules. Everything below the reader is a pure function of API objects, so
that it can be unit-tested without a cluster.
"""

from __future__ import annotations

import json
import re

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s

# kind -> (API prefix, plural, namespaced)
KINDS = {
    'CustomResourceDefinition': ('/apis/apiextensions.k8s.io/v1', 'customresourcedefinitions', False),
    'Deployment': ('/apis/apps/v1', 'deployments', True),
    'DaemonSet': ('/apis/apps/v1', 'daemonsets', True),
    'StatefulSet': ('/apis/apps/v1', 'statefulsets', True),
    'Service': ('/api/v1', 'services', True),
    'Namespace': ('/api/v1', 'namespaces', False),
    'MutatingWebhookConfiguration': ('/apis/admissionregistration.k8s.io/v1', 'mutatingwebhookconfigurations', False),
    'ValidatingWebhookConfiguration': ('/apis/admissionregistration.k8s.io/v1', 'validatingwebhookconfigurations', False),
    'ClusterIssuer': ('/apis/cert-manager.io/v1', 'clusterissuers', False),
    'Issuer': ('/apis/cert-manager.io/v1', 'issuers', True),
    'Pod': ('/api/v1', 'pods', True),
    'Event': ('/api/v1', 'events', True),
    'Node': ('/api/v1', 'nodes', False),
}
WAITABLE_KINDS = sorted(k for k in KINDS if k not in ('Pod', 'Event', 'Node'))


def transport_errors():
    """Exceptions raised when the API server cannot be reached (connection, TLS, name resolution)."""
    errors = (OSError, ValueError)
    if _k8s.urllib3 is not None:
        errors += (_k8s.urllib3.exceptions.HTTPError,)
    return errors


class Reader:
    """Reads and dry-run creates through the ``kubernetes`` client's ApiClient,
    with plain JSON dicts in and out.

    It calls the ApiClient directly rather than the typed API classes
    (CoreV1Api, AppsV1Api, ...): the client imports those lazily, which costs
    more than half a second, and plain dicts are what the checks need anyway.
    Both request styles of the client are supported: ``param_serialize`` then
    ``call_api`` (clients made by the newer OpenAPI generator) and the older
    single ``call_api``.
    """

    def __init__(self, api_client, request_timeout=10):
        self.api = api_client
        self.timeout = request_timeout
        self._served = {}

    def _call(self, method, path, query=None, body=None):
        headers = {'Accept': 'application/json'}
        if body is not None:
            headers['Content-Type'] = 'application/json'
        api = self.api
        if hasattr(api, 'param_serialize'):
            request = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                          header_params=headers, body=body, auth_settings=['BearerToken'])
            response = api.call_api(*request, _request_timeout=self.timeout)
            data = response.read()
            if not 200 <= response.status <= 299:
                raise _k8s.ApiException.from_response(http_resp=response, body=None, data=None)
        else:
            response = api.call_api(path, method, query_params=query or [], header_params=headers, body=body,
                                    auth_settings=['BearerToken'], _preload_content=False,
                                    _return_http_data_only=True, _request_timeout=self.timeout)
            data = response.data
        return json.loads(data or b'{}')

    @staticmethod
    def path(kind, namespace=None, name=None):
        prefix, plural, namespaced = KINDS[kind]
        path = prefix
        if namespaced and namespace:
            path += '/namespaces/%s' % namespace
        path += '/' + plural
        if name:
            path += '/' + name
        return path

    def get(self, kind, name, namespace=None):
        """The object, or ``None`` when it does not exist."""
        try:
            return self._call('GET', self.path(kind, namespace, name))
        except _k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        """Every object of a kind (in a namespace, or in all); ``[]`` when the kind is not served."""
        query = []
        if label_selector:
            query.append(('labelSelector', label_selector))
        if field_selector:
            query.append(('fieldSelector', field_selector))
        try:
            return self._call('GET', self.path(kind, namespace), query).get('items') or []
        except _k8s.ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def version(self):
        return self._call('GET', '/version')

    def served_kinds(self, api_version):
        """``{kind: (path prefix, plural, namespaced)}`` of what the API server serves
        for ``api_version`` (``v1`` or ``<group>/<version>``), read from its discovery
        document once per reader; ``{}`` when it serves none (a CRD not installed)."""
        cache = self._served
        if api_version not in cache:
            prefix = '/api/v1' if api_version == 'v1' else '/apis/' + api_version.strip('/')
            try:
                resources = self._call('GET', prefix).get('resources') or []
            except _k8s.ApiException as exc:
                if exc.status != 404:
                    raise
                resources = []
            cache[api_version] = dict((r.get('kind'), (prefix, r.get('name'), bool(r.get('namespaced'))))
                                      for r in resources if '/' not in (r.get('name') or '/'))
        return cache[api_version]

    def read_objects(self, query):
        """One query of preflight_info's ``objects``: the matching objects, and
        whether the API server serves the kind at all."""
        served = self.served_kinds(query['api_version']).get(query['kind'])
        if served is None:
            return dict(served=False, resources=[])
        prefix, plural, namespaced = served
        path = prefix
        if namespaced and query.get('namespace'):
            path += '/namespaces/%s' % query['namespace']
        path += '/' + plural
        selector = ','.join(query.get('label_selectors') or [])
        if query.get('name') and not selector:
            try:
                return dict(served=True, resources=[self._call('GET', path + '/' + query['name'])])
            except _k8s.ApiException as exc:
                if exc.status == 404:
                    return dict(served=True, resources=[])
                raise
        params = [('labelSelector', selector)] if selector else []
        if query.get('name'):  # a name and labels: the object only if its labels match
            params.append(('fieldSelector', 'metadata.name=%s' % query['name']))
        items = self._call('GET', path, params).get('items') or []
        kind_version = dict(apiVersion=query['api_version'], kind=query['kind'])
        # The items of a built-in kind's list carry no apiVersion and kind (the list
        # does); give every object both, as kubernetes.core.k8s_info does.
        return dict(served=True, resources=[dict(kind_version, **item) for item in items])

    def dry_run_create(self, manifest):
        """Server-side dry-run create: ``(accepted, message)``."""
        namespace = (manifest.get('metadata') or {}).get('namespace') or 'default'
        try:
            self._call('POST', self.path(manifest.get('kind'), namespace), [('dryRun', 'All')], body=manifest)
        except _k8s.ApiException as exc:
            if exc.status == 409:  # it exists already: creating one is allowed
                return True, 'exists already'
            return False, _k8s.api_error_text(exc)
        return True, 'accepted'


# --------------------------------------------------------------------------
# Judging objects (pure functions)
# --------------------------------------------------------------------------

# One condition of an object's status, or None (shared with the cert-manager readers).
condition = _k8s.condition


def _generation_observed(obj):
    generation = (obj.get('metadata') or {}).get('generation')
    observed = (obj.get('status') or {}).get('observedGeneration')
    return generation is None or (observed is not None and observed >= generation)


def deployment_state(obj):
    """``(ready, detail)`` like ``kubectl rollout status``: all replicas updated and available, no old ones left."""
    spec, status = obj.get('spec') or {}, obj.get('status') or {}
    want = spec.get('replicas', 1)
    updated, total = status.get('updatedReplicas', 0), status.get('replicas', 0)
    ready, available = status.get('readyReplicas', 0), status.get('availableReplicas', 0)
    detail = '%d/%d updated, %d/%d ready, %d/%d available' % (updated, want, ready, want, available, want)
    if not _generation_observed(obj):
        return False, 'spec change not yet observed by the controller (%s)' % detail
    progressing = condition(obj, 'Progressing')
    if progressing and progressing.get('reason') == 'ProgressDeadlineExceeded':
        detail += '; Progressing=False: %s' % (progressing.get('message') or 'progress deadline exceeded')
    if updated < want:
        return False, detail
    if total > updated:
        return False, '%s; %d old replica(s) still terminating' % (detail, total - updated)
    if available < updated or ready < want:
        return False, detail
    return True, detail


def daemonset_state(obj):
    status = obj.get('status') or {}
    desired = status.get('desiredNumberScheduled', 0)
    updated = status.get('updatedNumberScheduled', 0)
    ready, available = status.get('numberReady', 0), status.get('numberAvailable', 0)
    detail = '%d/%d nodes updated, %d/%d ready, %d/%d available' % (updated, desired, ready, desired, available, desired)
    if not _generation_observed(obj):
        return False, 'spec change not yet observed by the controller (%s)' % detail
    if status.get('desiredNumberScheduled') is None:
        return False, 'no status yet'
    if updated < desired or available < desired or ready < desired:
        return False, detail
    if desired == 0:
        return True, 'no node to schedule on (0 desired)'
    return True, detail


def statefulset_state(obj):
    spec, status = obj.get('spec') or {}, obj.get('status') or {}
    want = spec.get('replicas', 1)
    ready, updated = status.get('readyReplicas', 0), status.get('updatedReplicas', 0)
    detail = '%d/%d ready, %d/%d updated' % (ready, want, updated, want)
    if not _generation_observed(obj):
        return False, 'spec change not yet observed by the controller (%s)' % detail
    if ready < want or (status.get('updateRevision') and status.get('currentRevision') != status.get('updateRevision')
                        and updated < want):
        return False, detail
    return True, detail


def crd_state(obj):
    established = condition(obj, 'Established')
    if established and established.get('status') == 'True':
        return True, 'Established'
    names = condition(obj, 'NamesAccepted')
    if names and names.get('status') == 'False':
        return False, 'names not accepted: %s' % (names.get('message') or names.get('reason'))
    return False, 'not Established yet%s' % (
        ' (%s)' % (established.get('message') or established.get('reason')) if established else '')


def service_addresses(obj):
    """External addresses (LoadBalancer ingress IPs or host names) of a Service."""
    ingress = ((obj.get('status') or {}).get('loadBalancer') or {}).get('ingress') or []
    return [i.get('ip') or i.get('hostname') for i in ingress if i.get('ip') or i.get('hostname')]


def service_state(obj, require_address=True):
    spec = obj.get('spec') or {}
    svc_type = spec.get('type', 'ClusterIP')
    if svc_type != 'LoadBalancer' or not require_address:
        return True, '%s %s' % (svc_type, spec.get('clusterIP', ''))
    addresses = service_addresses(obj)
    if addresses:
        return True, 'LoadBalancer at %s' % ', '.join(addresses)
    return False, 'LoadBalancer without an external address yet'


def webhook_state(obj, require_ca_bundle=False):
    webhooks = obj.get('webhooks') or []
    if require_ca_bundle:
        missing = [w.get('name') for w in webhooks if not (w.get('clientConfig') or {}).get('caBundle')]
        if missing or not webhooks:
            return False, 'no caBundle yet in %s' % (', '.join(missing) or 'any webhook')
    return True, '%d webhook(s)' % len(webhooks)


def ready_condition_state(obj):
    """Objects that report readiness as a condition ``Ready`` (cert-manager's
    issuers): ready when it is ``True`` for the object's current generation."""
    ready = condition(obj, 'Ready')
    if not ready:
        return False, 'no Ready condition yet'
    why = ready.get('message') or ready.get('reason') or ''
    observed = ready.get('observedGeneration')
    generation = (obj.get('metadata') or {}).get('generation')
    if observed is not None and generation is not None and observed < generation:
        return False, 'Ready is for generation %s, the object is at %s' % (observed, generation)
    if ready.get('status') == 'True':
        return True, 'Ready%s' % (' (%s)' % why if why else '')
    return False, 'Ready=%s%s' % (ready.get('status'), ' (%s)' % why if why else '')


def object_state(kind, obj, require_address=True, require_ca_bundle=False):
    """``(ready, detail)`` of an object of a waitable kind."""
    if kind == 'Deployment':
        return deployment_state(obj)
    if kind == 'DaemonSet':
        return daemonset_state(obj)
    if kind == 'StatefulSet':
        return statefulset_state(obj)
    if kind == 'CustomResourceDefinition':
        return crd_state(obj)
    if kind == 'Service':
        return service_state(obj, require_address)
    if kind in ('MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'):
        return webhook_state(obj, require_ca_bundle)
    if kind in ('ClusterIssuer', 'Issuer'):
        return ready_condition_state(obj)
    if kind == 'Namespace':
        phase = (obj.get('status') or {}).get('phase', 'Active')
        return phase == 'Active', phase
    raise ValueError('unsupported kind %s' % kind)


def pod_controller(pod):
    """Name of the Deployment (or other owner) behind a pod."""
    meta = pod.get('metadata') or {}
    for owner in meta.get('ownerReferences') or []:
        if owner.get('controller'):
            name = owner.get('name', '')
            template_hash = (meta.get('labels') or {}).get('pod-template-hash')
            if owner.get('kind') == 'ReplicaSet' and template_hash and name.endswith('-' + template_hash):
                return name[:-len(template_hash) - 1]
            return name
    return ''


def pod_summary(pod):
    """What matters about a pod for readiness and sidecar checks."""
    meta, spec, status = pod.get('metadata') or {}, pod.get('spec') or {}, pod.get('status') or {}
    native = [c.get('name') for c in spec.get('initContainers') or [] if c.get('restartPolicy') == 'Always']
    regular = [c.get('name') for c in spec.get('containers') or []]
    statuses = [s for s in (status.get('containerStatuses') or []) + (status.get('initContainerStatuses') or [])
                if s.get('name') in regular + native]
    waiting = []
    for state in statuses:
        reason = ((state.get('state') or {}).get('waiting') or {}).get('reason') or \
            ((state.get('state') or {}).get('terminated') or {}).get('reason')
        if reason:
            waiting.append('%s: %s' % (state.get('name'), reason))
    ready_cond = condition(pod, 'Ready')
    return {
        'name': meta.get('name'),
        'namespace': meta.get('namespace'),
        'controller': pod_controller(pod),
        'node': spec.get('nodeName', ''),
        'phase': status.get('phase', 'Unknown'),
        'ready': bool(ready_cond and ready_cond.get('status') == 'True'),
        'terminating': bool(meta.get('deletionTimestamp')),
        'containers': regular + native,
        'native_sidecars': native,
        'ready_containers': sum(1 for s in statuses if s.get('ready')),
        'terminated': [s.get('name') for s in statuses if (s.get('state') or {}).get('terminated')],
        'waiting': waiting,
    }


FINISHED_PHASES = ('Succeeded', 'Failed')


def pods_state(pods, containers=(), absent_containers=(), min_pods=1, terminated_containers=()):
    """``(ready, detail, problems)`` for a set of pod summaries; terminating pods are ignored.

    With ``terminated_containers``, a pod is done when those containers have
    terminated or the pod has ended (phase Succeeded or Failed: a deadline,
    an eviction) instead of when it is Ready: a client pod that runs once,
    whose sidecar may keep running after it. Whether it succeeded is for the
    caller to judge."""
    finished = bool(terminated_containers)
    live = [p for p in pods if not p['terminating']]
    problems = []
    for pod in live:
        missing = [c for c in containers if c not in pod['containers']]
        extra = [c for c in absent_containers if c in pod['containers']]
        reasons = []
        if missing:
            reasons.append('no %s container' % ', '.join(missing))
        if extra:
            reasons.append('has %s' % ', '.join(extra))
        running = [c for c in terminated_containers if c not in pod['terminated']]
        if finished and running and pod['phase'] not in FINISHED_PHASES:
            reasons.append('%s not terminated (phase %s%s)' % (
                ', '.join(running), pod['phase'], '; ' + ', '.join(pod['waiting']) if pod['waiting'] else ''))
        elif not finished and not pod['ready']:
            reasons.append('not Ready (%d/%d containers ready, phase %s%s)' % (
                pod['ready_containers'], len(pod['containers']), pod['phase'],
                '; ' + ', '.join(pod['waiting']) if pod['waiting'] else ''))
        if reasons:
            problems.append('pod %s: %s' % (pod['name'], '; '.join(reasons)))
    detail = '%d/%d pods %s' % (len(live) - len(problems), len(live), 'finished' if finished else 'ok')
    if len(live) < min_pods:
        problems.append('%d pod(s), at least %d expected' % (len(live), min_pods))
    return not problems, detail, problems


def event_time(event):
    return event.get('lastTimestamp') or event.get('eventTime') or \
        (event.get('metadata') or {}).get('creationTimestamp') or ''


def describe_events(events, limit=8, names=None):
    """The latest events as text, optionally only those about objects whose name starts with one of ``names``."""
    chosen = [e for e in events
              if not names or any(((e.get('involvedObject') or {}).get('name') or '').startswith(n) for n in names)]
    chosen.sort(key=event_time)
    out = []
    for event in chosen[-limit:]:
        obj = event.get('involvedObject') or {}
        text = (event.get('message') or '').strip()
        out.append('[%s/%s] %s: %s' % (obj.get('kind'), obj.get('name'), event.get('reason'), text))
    return out


_VERSION = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)')


def plain_version(text):
    """``1.34.4`` from ``v1.34.4-gke.1+abc``; ``None`` when there is no X.Y.Z."""
    match = _VERSION.match(text or '')
    return '.'.join(match.groups()) if match else None


def node_summary(node):
    ready = condition(node, 'Ready')
    addresses = ((node.get('status') or {}).get('addresses')) or []
    return {
        'name': (node.get('metadata') or {}).get('name'),
        'ready': bool(ready and ready.get('status') == 'True'),
        'reason': '' if ready and ready.get('status') == 'True' else
                  ((ready or {}).get('reason') or (ready or {}).get('message') or 'no Ready condition'),
        'internal_ip': next((a.get('address') for a in addresses if a.get('type') == 'InternalIP'), ''),
        'kubelet_version': (((node.get('status') or {}).get('nodeInfo')) or {}).get('kubeletVersion', ''),
        'unschedulable': bool((node.get('spec') or {}).get('unschedulable')),
    }


# --------------------------------------------------------------------------
# wait_for_ready
# --------------------------------------------------------------------------

RESOURCE_SPEC = dict(
    kind=dict(type='str', required=True, choices=WAITABLE_KINDS),
    name=dict(type='str'),
    namespace=dict(type='str'),
    label_selectors=dict(type='list', elements='str'),
    min_count=dict(type='int', default=1),
    require_address=dict(type='bool', default=True),
    require_ca_bundle=dict(type='bool', default=False),
)
POD_CHECK_SPEC = dict(
    namespace=dict(type='str', required=True),
    label_selectors=dict(type='list', elements='str'),
    containers=dict(type='list', elements='str', default=[]),
    absent_containers=dict(type='list', elements='str', default=[]),
    min_pods=dict(type='int', default=1),
    terminated_containers=dict(type='list', elements='str', default=[]),
)
WAIT_FOR_READY_SPEC = dict(
    resources=dict(type='list', elements='dict', default=[], options=RESOURCE_SPEC,
                   mutually_exclusive=[('name', 'label_selectors')],
                   required_one_of=[('name', 'label_selectors')]),
    pods=dict(type='list', elements='dict', default=[], options=POD_CHECK_SPEC),
    events=dict(type='int', default=8),
    progress_interval=dict(type='float', default=10),
)


def input_errors(params):
    """Problems the argument spec cannot express; an empty list when the input is usable."""
    errors = []
    if not params['resources'] and not params['pods']:
        errors.append('give at least one entry in resources or pods')
    for index, res in enumerate(params['resources']):
        namespaced = KINDS[res['kind']][2]
        if namespaced and not res.get('namespace'):
            errors.append('resources[%d]: %s is namespaced, give its namespace' % (index, res['kind']))
        if not namespaced and res.get('namespace'):
            errors.append('resources[%d]: %s is cluster-scoped, namespace must not be set' % (index, res['kind']))
        if res['min_count'] < 0:
            errors.append('resources[%d]: min_count must be >= 0' % index)
    for param in ('timeout', 'progress_interval'):
        if params.get(param) is not None and params[param] < 0:
            errors.append('%s must be >= 0' % param)
    if params['initial_sleep'] <= 0:
        errors.append('initial_sleep must be positive')
    if params['max_sleep'] < params['initial_sleep']:
        errors.append('max_sleep (%r) must not be smaller than initial_sleep (%r)' % (params['max_sleep'], params['initial_sleep']))
    if params['backoff_factor'] < 1:
        errors.append('backoff_factor (%r) must be at least 1' % (params['backoff_factor'],))
    return errors


def resource_ref(res):
    where = '%s/' % res['namespace'] if res.get('namespace') else ''
    what = res.get('name') or '(%s)' % ','.join(res.get('label_selectors') or [])
    return '%s %s%s' % (res['kind'], where, what)


class ReadyWaiter:
    """Polls resources and pods until every one is ready, or the timeout."""

    def __init__(self, params, reader, progress=None, clock=None, sleep=None):
        self.params = params
        self.reader = reader
        self.progress = progress
        self.clock = clock
        self.sleep = sleep

    def _check_resource(self, res):
        kind = res['kind']
        if res.get('name'):
            obj = self.reader.get(kind, res['name'], res.get('namespace'))
            objects = [obj] if obj is not None else []
        else:
            objects = self.reader.list(kind, res.get('namespace'), ','.join(res['label_selectors']))
        states = []
        for obj in objects:
            meta = obj.get('metadata') or {}
            ready, detail = object_state(kind, obj, res['require_address'], res['require_ca_bundle'])
            state = dict(kind=kind, name=meta.get('name'), namespace=meta.get('namespace', ''), ready=ready,
                         detail=detail)
            if kind == 'Service':
                state['addresses'] = service_addresses(obj)
                state['type'] = (obj.get('spec') or {}).get('type', 'ClusterIP')
                state['cluster_ip'] = (obj.get('spec') or {}).get('clusterIP', '')
                state['ports'] = [dict(name=p.get('name', ''), port=p.get('port'), node_port=p.get('nodePort'))
                                  for p in (obj.get('spec') or {}).get('ports') or []]
            states.append(state)
        problems = ['%s %s: %s' % (kind, ('%s/' % s['namespace'] if s['namespace'] else '') + s['name'], s['detail'])
                    for s in states if not s['ready']]
        if len(objects) < (1 if res.get('name') else res['min_count']):
            problems.append('%s: %s' % (resource_ref(res), 'does not exist' if res.get('name') else
                                        '%d found, at least %d expected' % (len(objects), res['min_count'])))
        return states, problems

    def check(self, remaining=None):
        del remaining
        try:
            resources, pods, pending = [], [], []
            for res in self.params['resources']:
                states, problems = self._check_resource(res)
                resources.extend(states)
                pending.extend(problems)
            for check in self.params['pods']:
                found = [pod_summary(p) for p in self.reader.list(
                    'Pod', check['namespace'], ','.join(check.get('label_selectors') or []))]
                found.sort(key=lambda p: p['name'])
                ok, dummy, problems = pods_state(found, check['containers'], check['absent_containers'],
                                                 check['min_pods'], check['terminated_containers'])
                pods.extend(found)
                if not ok:
                    pending.extend(problems)
        except _k8s.ApiException as exc:
            status = 'fatal' if _k8s.is_fatal_api_error(exc) else 'retry'
            return status, dict(error=_k8s.api_error_text(exc), resources=[], pods=[], pending=[])
        except transport_errors() as exc:
            # Connection refused, TLS or DNS errors from urllib3: nothing answered;
            # the API server may come back.
            return 'retry', dict(error=_k8s.transport_error_text(exc), unreachable=True,
                                 resources=[], pods=[], pending=[])
        result = dict(resources=resources, pods=pods, pending=pending)
        return ('retry' if pending else 'ok'), result

    @staticmethod
    def _waiting_for(result):
        """Progress for the in-process path: what is still awaited."""
        waiting = result.get('pending') or ([result['error']] if result.get('error') else [])
        return '%d item(s): %s' % (len(waiting), '; '.join(waiting[:4]) + (' ...' if len(waiting) > 4 else ''))

    def _events(self):
        namespaces = sorted({r['namespace'] for r in self.params['resources'] if r.get('namespace')}
                            | {p['namespace'] for p in self.params['pods']})
        names = [r['name'] for r in self.params['resources'] if r.get('name')] or None
        out = []
        unreadable = (_k8s.ApiException,) + transport_errors()
        for namespace in namespaces:
            try:
                events = self.reader.list('Event', namespace)
            except unreadable as exc:
                why = _k8s.api_error_text(exc) if isinstance(exc, _k8s.ApiException) else _k8s.transport_error_text(exc)
                out.append('(events of %s could not be read: %s)' % (namespace, why))
                continue
            latest = describe_events(events, self.params['events'], names if not self.params['pods'] else None)
            out.extend('%s: %s' % (namespace, line) for line in latest)
        return out

    def run(self):
        from ansible_collections.servicemesh.istio.plugins.module_utils import _wait  # pylint: disable=import-outside-toplevel
        import time  # pylint: disable=import-outside-toplevel
        outcome, last = _wait.wait_with_progress(self.check, self.params, self.progress, self._waiting_for,
                                                 clock=self.clock or time.monotonic, sleep=self.sleep or time.sleep)
        result = dict(changed=False, resources=last.get('resources', []), pods=last.get('pods', []),
                      pending=last.get('pending', []), elapsed=round(outcome.elapsed, 2), attempts=outcome.attempts)
        if outcome.success:
            return result
        events = self._events() if self.params['events'] else []
        result['events'] = events
        if last.get('unreachable'):
            host = getattr(getattr(getattr(self.reader, 'api', None), 'configuration', None), 'host', None)
            why = 'no answer from the API server%s at the last attempt (%s)' % (
                ' at %s' % host if host else '', last['error'])
        elif last.get('error'):
            why = 'the API server answered: %s' % last['error']
        else:
            why = 'not ready: %s' % '; '.join(last.get('pending', []))
        result['failed'] = True
        result['msg'] = '%s after %.0f s (%d attempts): %s.%s' % (
            'Gave up' if outcome.aborted else 'Timed out', outcome.elapsed, outcome.attempts, why,
            (' Latest events: %s' % ' | '.join(events)) if events else ' No events recorded.')
        return result


# --------------------------------------------------------------------------
# preflight_info
# --------------------------------------------------------------------------

OBJECTS_QUERY_SPEC = dict(
    api_version=dict(type='str', required=True),
    kind=dict(type='str', required=True),
    namespace=dict(type='str'),
    name=dict(type='str'),
    label_selectors=dict(type='list', elements='str', default=[]),
)

PREFLIGHT_INFO_SPEC = dict(
    nodes=dict(type='bool', default=True),
    dry_run_create=dict(type='list', elements='dict', default=[]),
    objects=dict(type='list', elements='dict', default=[], options=OBJECTS_QUERY_SPEC),
    helm_binary=dict(type='str'),
    chart_repo=dict(type='str'),
    charts=dict(type='list', elements='str', default=[]),
    chart_version=dict(type='str'),
    request_timeout=dict(type='float', default=30),
)


def chart_index_summary(index, charts, version):
    """Per chart: whether ``version`` exists, its URL and the latest versions the index has."""
    entries = (index or {}).get('entries') or {}
    out = {}
    for chart in charts:
        releases = entries.get(chart) or []
        versions = [str(r.get('version')) for r in releases]
        match = next((r for r in releases if str(r.get('version')) == version), None)
        urls = (match or {}).get('urls') or []
        out[chart] = dict(found=match is not None, url=urls[0] if urls else '', versions=len(versions),
                          latest=sorted(versions, key=_version_key)[-8:])
    return out


def _version_key(text):
    """Semantic-version order: 1.9.0 < 1.10.0, and a pre-release before its release (1.30.4-beta.1 < 1.30.4)."""
    core, dummy, pre = text.split('+', 1)[0].partition('-')
    numbers = [int(p) if p.isdigit() else -1 for p in core.split('.')]
    pre_parts = [(0, int(p), '') if p.isdigit() else (1, 0, p) for p in pre.split('.')] if pre else []
    return numbers, 0 if pre else 1, pre_parts


def _load_index(data):
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        return json.loads(data)
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    return yaml.load(data, Loader=loader)  # nosec: safe loader


def gather_preflight(params, reader, run_command, open_url):
    """Everything the preflight checks need, read at once.

    ``reader`` is a :class:`Reader` (or ``None`` when no Kubernetes read is
    asked for), ``run_command(argv) -> (rc, out, err)`` and
    ``open_url(url, timeout) -> bytes`` come from the caller so that the same
    code runs as a module and in the controller. Kubernetes errors raise;
    Helm and chart repository problems are reported in the result, for the
    caller to judge.
    """
    result = dict(changed=False)
    if reader is not None:
        version = reader.version()
        result['kubernetes'] = dict(git_version=version.get('gitVersion', ''),
                                    version=plain_version(version.get('gitVersion', '')) or '',
                                    platform=version.get('platform', ''))
        if params['nodes']:
            result['nodes'] = sorted((node_summary(n) for n in reader.list('Node')), key=lambda n: n['name'])
        result['dry_run'] = []
        for manifest in params['dry_run_create']:
            meta = manifest.get('metadata') or {}
            accepted, message = reader.dry_run_create(manifest)
            result['dry_run'].append(dict(kind=manifest.get('kind'), name=meta.get('name', ''),
                                          namespace=meta.get('namespace', ''), accepted=accepted, message=message))
        result['objects'] = []
        for query in params.get('objects') or []:
            found = reader.read_objects(query)
            result['objects'].append(dict(api_version=query['api_version'], kind=query['kind'],
                                          namespace=query.get('namespace') or '', name=query.get('name') or '',
                                          label_selectors=list(query.get('label_selectors') or []), **found))
    if params.get('helm_binary'):
        try:
            rc, out, err = run_command([params['helm_binary'], 'version', '--short'])
        except OSError as exc:
            rc, out, err = 127, '', 'cannot run %s: %s' % (params['helm_binary'], exc.strerror or exc)
        helm = dict(path=params['helm_binary'], output=(out or '').strip())
        helm['version'] = (plain_version(helm['output']) or '') if rc == 0 else ''
        helm['error'] = '' if rc == 0 else ((err or out or '').strip() or 'exit code %s' % rc)
        result['helm'] = helm
    if params.get('chart_repo'):
        base = params['chart_repo'].rstrip('/')
        repo = dict(url=params['chart_repo'], index_url=base + '/index.yaml', error='', charts={})
        try:
            index = _load_index(open_url(repo['index_url'], params['request_timeout']))
            if not isinstance(index, dict) or 'entries' not in index:
                raise ValueError('not a Helm repository index (no entries)')
            repo['charts'] = chart_index_summary(index, params['charts'], params.get('chart_version') or '')
            for info in repo['charts'].values():
                if info['url'] and '://' not in info['url']:
                    info['url'] = base + '/' + info['url'].lstrip('/')
        except Exception as exc:  # pylint: disable=broad-exception-caught
            repo['error'] = str(exc).split('\n', maxsplit=1)[0] or exc.__class__.__name__
        result['chart_repo'] = repo
    return result


def _client_or_error(params):
    """``(api_client, None)`` or ``(None, failure result)``."""
    error = _k8s.import_kubernetes()
    if error:
        return None, dict(failed=True, msg='the kubernetes Python library is needed on the host that runs this '
                                           '(pip install kubernetes)', exception=error)
    try:
        return _k8s.build_api_client(params), None
    except _k8s.KubeConfigError as exc:
        return None, dict(failed=True, msg=str(exc))


def run_wait_for_ready(params, progress=None):
    """The wait_for_ready module's whole logic: its result dict."""
    errors = input_errors(params)
    if errors:
        return dict(failed=True, msg='; '.join(errors))
    client, failure = _client_or_error(params)
    if failure:
        return failure
    return ReadyWaiter(params, Reader(client), progress).run()


def run_preflight_info(params, run_command, open_url):
    """The preflight_info module's whole logic: its result dict."""
    reader = None
    if (params['nodes'] or params['dry_run_create'] or params.get('objects')
            or not (params.get('helm_binary') or params.get('chart_repo'))):
        client, failure = _client_or_error(params)
        if failure:
            return failure
        reader = Reader(client, request_timeout=params['request_timeout'])
    for manifest in params['dry_run_create']:
        if manifest.get('kind') not in KINDS or not (manifest.get('metadata') or {}).get('name'):
            return dict(failed=True, msg='dry_run_create: each manifest needs metadata.name and a kind among %s (got %s)'
                        % (', '.join(sorted(KINDS)), manifest.get('kind')))
    try:
        return gather_preflight(params, reader, run_command, open_url)
    except _k8s.ApiException as exc:
        return dict(failed=True, msg='The Kubernetes API server refused the request: %s' % _k8s.api_error_text(exc))
    except transport_errors() as exc:
        host = getattr(getattr(reader, 'api', None), 'configuration', None)
        return dict(failed=True, msg='Cannot reach the Kubernetes API server%s: %s' % (
            ' at %s' % host.host if host is not None else '', _k8s.transport_error_text(exc)))
