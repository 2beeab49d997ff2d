# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""The proxy_config_info module's logic: select pods, read each proxy's
configuration from its Envoy (``pilot-agent request GET config_dump`` in the
istio-proxy container) or from istiod (xDS), summarise it, and optionally wait
until it shows what is expected."""

from __future__ import annotations

import importlib
import json
import time

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _proxy_config, _ready, _wait, _xds

EXPECT_RETRIES_SPEC = dict(
    attempts=dict(type='int'),
    per_try_timeout=dict(type='str'),
    retry_on=dict(type='str'),
)
EXPECT_ROUTE_SPEC = dict(
    host=dict(type='str', required=True),
    weights=dict(type='dict'),
    timeout=dict(type='str'),
    retries=dict(type='dict', options=EXPECT_RETRIES_SPEC),
)
EXPECT_POOL_SPEC = dict(
    max_connections=dict(type='int'),
    http1_max_pending_requests=dict(type='int'),
    http2_max_requests=dict(type='int'),
    max_retries=dict(type='int'),
    max_requests_per_connection=dict(type='int'),
)
EXPECT_OUTLIER_SPEC = dict(
    consecutive_5xx_errors=dict(type='int'),
    interval=dict(type='str'),
    base_ejection_time=dict(type='str'),
    max_ejection_percent=dict(type='int'),
)
EXPECT_POLICY_SPEC = dict(
    host=dict(type='str', required=True),
    connection_pool=dict(type='dict', options=EXPECT_POOL_SPEC),
    outlier_detection=dict(type='dict', options=EXPECT_OUTLIER_SPEC),
)
EXPECT_SERVER_SPEC = dict(
    port=dict(type='int', required=True),
    hosts=dict(type='list', elements='str', default=[]),
    tls_mode=dict(type='str', choices=['none', 'simple', 'mutual', 'istio_mutual']),
    credential_name=dict(type='str'),
    destination=dict(type='str'),
    https_redirect=dict(type='bool'),
)
EXPECT_SPEC = dict(
    inbound_mode=dict(type='str', choices=['strict', 'permissive', 'disabled']),
    routes=dict(type='list', elements='dict', default=[], options=EXPECT_ROUTE_SPEC),
    gateway_servers=dict(type='list', elements='dict', default=[], options=EXPECT_SERVER_SPEC),
    clusters=dict(type='list', elements='str', default=[]),
    traffic_policies=dict(type='list', elements='dict', default=[], options=EXPECT_POLICY_SPEC),
    no_problems=dict(type='bool', default=False),
)
PROXY_CONFIG_INFO_SPEC = dict(
    namespace=dict(type='str', required=True),
    name=dict(type='str'),
    label_selectors=dict(type='list', elements='str', default=[]),
    source=dict(type='str', default='auto', choices=['auto', 'envoy', 'istiod']),
    istiod_address=dict(type='str'),
    istio_namespace=dict(type='str', default='istio-system'),
    cluster_domain=dict(type='str', default='cluster.local'),
    hosts=dict(type='list', elements='str', default=[]),
    include_raw=dict(type='bool', default=False),
    min_pods=dict(type='int', default=1),
    expect=dict(type='dict', options=EXPECT_SPEC),
    request_timeout=dict(type='float', default=10),
    progress_interval=dict(type='float', default=10),
)


def input_errors(params):
    errors = []
    if params.get('name') and params.get('label_selectors'):
        errors.append('give name or label_selectors, not both')
    if params['min_pods'] < 0:
        errors.append('min_pods must be >= 0')
    if params['request_timeout'] <= 0:
        errors.append('request_timeout must be positive')
    address = params.get('istiod_address')
    if address is not None and (':' not in address or not address.rsplit(':', 1)[1].isdigit()):
        errors.append('istiod_address must be host:port, got %r' % address)
    expect = params.get('expect') or {}
    for index, route in enumerate(expect.get('routes') or []):
        weights = route.get('weights') or {}
        for subset, weight in weights.items():
            try:
                value = int(weight)
            except (TypeError, ValueError):
                value = -1
            if value < 0 or value > 100 or str(value) != str(weight).strip():
                errors.append('expect.routes[%d].weights.%s must be an integer from 0 to 100, got %r'
                              % (index, subset, weight))
        durations = [('timeout', route.get('timeout')),
                     ('retries.per_try_timeout', (route.get('retries') or {}).get('per_try_timeout'))]
        errors.extend(_duration_errors('expect.routes[%d]' % index, durations))
    for index, policy in enumerate(expect.get('traffic_policies') or []):
        outlier = policy.get('outlier_detection') or {}
        errors.extend(_duration_errors('expect.traffic_policies[%d]' % index, [
            ('outlier_detection.%s' % key, outlier.get(key)) for key in ('interval', 'base_ejection_time')]))
    for param in ('timeout', 'progress_interval'):
        if params.get(param) is not None and params[param] < 0:
            errors.append('%s must be >= 0' % param)
    if params['initial_sleep'] <= 0:
        errors.append('initial_sleep must be positive')
    if params['max_sleep'] < params['initial_sleep']:
        errors.append('max_sleep must not be smaller than initial_sleep')
    if params['backoff_factor'] < 1:
        errors.append('backoff_factor must be at least 1')
    return errors


def _duration_errors(where, durations):
    return ['%s.%s must be a duration such as 10s, 500ms or 1m30s, got %r' % (where, name, value)
            for name, value in durations
            if value is not None and _proxy_config.duration_seconds(value) is None]


def _labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_ports(pod, services):
    """``{container port: service port}`` of the Services that select the pod."""
    labels = (pod.get('metadata') or {}).get('labels') or {}
    named = {}
    for container in (pod.get('spec') or {}).get('containers') or []:
        for port in container.get('ports') or []:
            if port.get('name'):
                named[port['name']] = port.get('containerPort')
    out = {}
    for svc in services:
        spec = svc.get('spec') or {}
        if not _labels_match(spec.get('selector') or {}, labels):
            continue
        for port in spec.get('ports') or []:
            target = port.get('targetPort', port.get('port'))
            if isinstance(target, str):
                target = named.get(target, int(target) if target.isdigit() else None)
            if target is not None:
                out.setdefault(int(target), port.get('port'))
    return out


def container_ports(pod):
    ports = set()
    for container in (pod.get('spec') or {}).get('containers') or []:
        if container.get('name') == _xds.PROXY_CONTAINER:
            continue
        for port in container.get('ports') or []:
            if port.get('containerPort') and (port.get('protocol') or 'TCP') == 'TCP':
                ports.add(int(port['containerPort']))
    return sorted(ports)


def pod_revision(pod):
    labels = (pod.get('metadata') or {}).get('labels') or {}
    revision = labels.get('istio.io/rev') or ''
    return '' if revision == 'default' else revision


class ProxyConfigReader:
    """Reads proxies' configuration; one instance per module run."""

    def __init__(self, params, reader, exec_config_dump=None):
        self.params = params
        self.reader = reader
        self.exec_config_dump = exec_config_dump
        self._istiod = {}

    def pods(self):
        params = self.params
        if params.get('name'):
            pod = self.reader.get('Pod', params['name'], params['namespace'])
            return [pod] if pod is not None else []
        pods = self.reader.list('Pod', params['namespace'], ','.join(params['label_selectors']) or None)
        return sorted(pods, key=lambda p: p['metadata']['name'])

    def istiod_address(self, revision):
        if self.params.get('istiod_address'):
            return self.params['istiod_address'], ''
        if revision not in self._istiod:
            name = 'istiod-%s' % revision if revision else 'istiod'
            svc = self.reader.get('Service', name, self.params['istio_namespace'])
            if svc is None:
                raise LookupError('no Service %s/%s: is Istio%s installed (istio_namespace)?' % (
                    self.params['istio_namespace'], name, ' revision %s' % revision if revision else ''))
            spec = svc.get('spec') or {}
            cluster_ip = spec.get('clusterIP')
            port = next((p.get('port') for p in spec.get('ports') or [] if p.get('port') == 15010), None)
            if not cluster_ip or cluster_ip == 'None' or port is None:
                raise LookupError('Service %s/%s has no ClusterIP with port 15010 (plaintext xDS)' % (
                    self.params['istio_namespace'], name))
            version = ((svc.get('metadata') or {}).get('labels') or {}).get('app.kubernetes.io/version', '')
            host = '[%s]' % cluster_ip if ':' in cluster_ip else cluster_ip
            self._istiod[revision] = ('%s:%s' % (host, port), version)
        return self._istiod[revision]

    def read(self, pod):
        """``(source, config, note)`` for one pod."""
        source = self.params['source']
        note = ''
        if source in ('auto', 'envoy'):
            if self.exec_config_dump is None:
                error = 'reading from Envoy needs the kubernetes client stream API'
            else:
                try:
                    return 'envoy', _xds.from_config_dump(self.exec_config_dump(pod)), ''
                except Exception as exc:  # pylint: disable=broad-except
                    error = str(exc).split('\n', maxsplit=1)[0]
            if source == 'envoy':
                raise _xds.XdsError('cannot read the config dump of %s/%s from its istio-proxy container: %s' % (
                    pod['metadata']['namespace'], pod['metadata']['name'], error))
            note = 'the istio-proxy container could not be read (%s); read from istiod instead' % error
        address, version = self.istiod_address(pod_revision(pod))
        node_id, metadata = _xds.node_identity(pod, self.params['cluster_domain'], version)
        config = _xds.fetch_proxy_config(address, node_id, metadata, self.params['request_timeout'])
        return 'istiod', config, note

    def proxy(self, pod, services):
        meta = pod['metadata']
        source, config, note = self.read(pod)
        kind = _xds.proxy_type(pod)
        summary = _proxy_config.summarize(config, kind, self.params['hosts'], container_ports(pod),
                                          service_ports(pod, services))
        out = dict(name=meta['name'], namespace=meta['namespace'], kind=kind, source=source,
                   revision=pod_revision(pod) or 'default', **summary)
        if note:
            out['note'] = note
        if self.params['include_raw']:
            out['raw'] = config
        return out


_EXEC_STATUS_CHANNEL = 3


def _exec_failure(status_text):
    """The message of a failed exec from the API server's status channel, or ''."""
    if not status_text:
        return ''
    try:
        status = json.loads(status_text)
    except ValueError:
        return status_text.strip().split('\n', 1)[0]
    if status.get('status') == 'Success':
        return ''
    return (status.get('message') or status.get('reason') or 'unknown error').split('\n', 1)[0]


def _exec_config_dump_factory(api_client, timeout):
    """A function that runs ``pilot-agent request GET config_dump`` in a pod's istio-proxy
    container (through the API server's exec) and returns the parsed dump."""
    def run(pod):
        stream = importlib.import_module('kubernetes.stream').stream
        core = _k8s.kubernetes.client.CoreV1Api(api_client)
        response = stream(core.connect_get_namespaced_pod_exec, pod['metadata']['name'], pod['metadata']['namespace'],
                          container=_xds.PROXY_CONTAINER, command=['pilot-agent', 'request', 'GET', 'config_dump'],
                          stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False,
                          _request_timeout=timeout)
        stdout, stderr, status = [], [], []
        deadline = time.monotonic() + timeout
        try:
            while response.is_open() and time.monotonic() < deadline:
                response.update(timeout=1)
                if response.peek_stdout():
                    stdout.append(response.read_stdout())
                if response.peek_stderr():
                    stderr.append(response.read_stderr())
                if response.peek_channel(_EXEC_STATUS_CHANNEL):
                    status.append(response.read_channel(_EXEC_STATUS_CHANNEL))
        finally:
            response.close()
        failure = _exec_failure(''.join(status))
        if failure:
            raise _xds.XdsError('the exec failed: %s' % failure)
        text = ''.join(stdout)
        try:
            return json.loads(text)
        except ValueError:
            raise _xds.XdsError('pilot-agent did not return a JSON config dump (%s)'
                                % ((''.join(stderr) or text).strip()[:200] or 'no output'))
    return run


def _summary_line(proxy):
    parts = ['%s/%s (%s, from %s)' % (proxy['namespace'], proxy['name'], proxy['kind'], proxy['source'])]
    if proxy['inbound']:
        parts.append('inbound ' + ', '.join('%s %s' % (i['port'], i['mode']) for i in proxy['inbound']))
    for server in proxy['gateway_servers']:
        parts.append('server %s %s %s' % (server['service_port'] or server['port'], server['tls_mode'],
                                          ','.join(server['hosts'] or server['server_names']) or '-'))
    return '; '.join(parts)


class ProxyConfigWaiter:
    def __init__(self, params, reader, exec_config_dump=None, progress=None):
        self.params = params
        self.k8s = reader
        self.reader = ProxyConfigReader(params, reader, exec_config_dump)
        self.progress = progress

    def check(self, remaining=None):
        del remaining
        params = self.params
        try:
            pods = self.reader.pods()
            with_proxy = [p for p in pods if _xds.proxy_container(p) is not None and
                          (p.get('status') or {}).get('phase') == 'Running' and
                          not (p.get('metadata') or {}).get('deletionTimestamp')]
            skipped = sorted(p['metadata']['name'] for p in pods if p not in with_proxy)
            services = self.k8s.list('Service', params['namespace']) if with_proxy else []
            proxies = [self.reader.proxy(pod, services) for pod in with_proxy]
        except LookupError as exc:
            return 'fatal', dict(error=str(exc))
        except _xds.XdsError as exc:
            return 'retry', dict(error=str(exc))
        except _k8s.ApiException as exc:
            status = 'fatal' if _k8s.is_fatal_api_error(exc) else 'retry'
            return status, dict(error='the API server answered: %s' % _k8s.api_error_text(exc))
        except _ready.transport_errors() as exc:
            return 'retry', dict(error='the API server could not be reached: %s' % str(exc).split('\n', 1)[0])
        result = dict(proxies=proxies, skipped=skipped, unmet=[])
        if len(proxies) < params['min_pods']:
            what = params.get('name') or ','.join(params['label_selectors']) or 'any pod'
            result['unmet'].append('%d running pod(s) with an istio-proxy sidecar or gateway proxy in %s matching %s, '
                                   'at least %d expected%s' % (
                                       len(proxies), params['namespace'], what, params['min_pods'],
                                       ' (without one: %s)' % ', '.join(skipped) if skipped else ''))
        if params.get('expect'):
            for proxy in proxies:
                result['unmet'].extend(_proxy_config.unmet_expectations(proxy, params['expect']))
        return ('retry' if result['unmet'] else 'ok'), result

    @staticmethod
    def _waiting_for(result):
        waiting = result.get('unmet') or ([result['error']] if result.get('error') else [])
        return 'the pushed configuration: %s' % ('; '.join(waiting[:3]) + (' ...' if len(waiting) > 3 else ''))

    def run(self, clock=time.monotonic, sleep=time.sleep):
        # Without expectations, one read (retried only while istiod or the API server cannot be reached).
        outcome, last = _wait.wait_with_progress(self.check, self.params, self.progress, self._waiting_for,
                                                 clock=clock, sleep=sleep)
        proxies = last.get('proxies', [])
        result = dict(changed=False, proxies=proxies, skipped=last.get('skipped', []), unmet=last.get('unmet', []),
                      problems=['%s/%s: %s' % (p['namespace'], p['name'], text)
                                for p in proxies for text in p['problems']],
                      summary=[_summary_line(p) for p in proxies],
                      elapsed=round(outcome.elapsed, 2), attempts=outcome.attempts)
        if outcome.success:
            return result
        result['failed'] = True
        if last.get('error'):
            why = last['error']
        else:
            why = '; '.join(last.get('unmet', []))
        result['msg'] = '%s after %.1f s (%d attempts): %s' % (
            'Gave up' if outcome.aborted else 'Timed out', outcome.elapsed, outcome.attempts, why)
        return result


def run_proxy_config_info(params, progress=None):
    """The proxy_config_info module's whole logic: its result dict."""
    errors = input_errors(params)
    if errors:
        return dict(failed=True, msg='; '.join(errors))
    error = _xds.import_xds()
    if error:
        msg = 'grpcio and xds-protos are needed on the host that runs this (pip install grpcio xds-protos)'
        return dict(failed=True, msg=msg, exception=error)
    error = _k8s.import_kubernetes()
    if error:
        return dict(failed=True, msg='the kubernetes Python library is needed on the host that runs this '
                                     '(pip install kubernetes)', exception=error)
    try:
        client = _k8s.build_api_client(params)
    except _k8s.KubeConfigError as exc:
        return dict(failed=True, msg=str(exc))
    exec_dump = _exec_config_dump_factory(client, params['request_timeout']) \
        if params['source'] in ('auto', 'envoy') else None
    reader = _ready.Reader(client, request_timeout=params['request_timeout'])
    return ProxyConfigWaiter(params, reader, exec_dump, progress).run()
