# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""Requests to a Service's HTTP API, through the Kubernetes API server's
service proxy (``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/<path>``:
no port-forward, and it works whatever the Service's exposure), or at an
external address as a user reaching an exposed tool would (the ingress
gateway's, with SNI and the certificate checked, or a LoadBalancer's). An
optional login first (a form or JSON POST whose cookies the request then
carries), with a short-lived ServiceAccount token from the TokenRequest API
when asked; the credentials never leave this code. The wait is
``_wait.wait_with_progress``: progress lines while it waits, and a last
answer that says what is still missing (for Prometheus' targets, which are
down and Prometheus' lastError)."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import time
from http.cookies import SimpleCookie
from urllib.parse import quote, urlencode

from ansible_collections.servicemesh.istio.plugins.module_utils import _wait

SERVICE_PROXY_SPEC = dict(
    namespace=dict(type='str'),
    service=dict(type='str'),
    port=dict(type='str', default=''),
    external=dict(type='dict', options=dict(
        host=dict(type='str', required=True),
        address=dict(type='str', default=''),
        port=dict(type='int'),
        scheme=dict(type='str', choices=['https', 'http'], default='https'),
        ca_path=dict(type='path'),
        source_address=dict(type='str', default=''),
        source_ranges=dict(type='list', elements='str', default=[]),
        status_outside=dict(type='list', elements='int', default=[]),
    )),
    path=dict(type='str', default='/'),
    query=dict(type='dict', default={}),
    status=dict(type='list', elements='int', default=[200]),
    expect_targets_up=dict(type='list', elements='str', default=[]),
    timeout=dict(type='int', default=60),
    request_timeout=dict(type='int', default=10),
    progress_interval=dict(type='float', default=10),
    login=dict(type='dict', no_log=False, options=dict(
        path=dict(type='str', required=True),
        format=dict(type='str', choices=['form', 'json'], default='form'),
        fields=dict(type='dict', default={}, no_log=True),
        service_account_field=dict(type='str', default=''),
        service_account=dict(type='str', default=''),
        service_account_namespace=dict(type='str', default=''),
        service_account_ttl=dict(type='int', default=600),
    )),
)
# What AnsibleModule (and the in-process action) check beyond the types.
SERVICE_PROXY_CHECKS = dict(
    mutually_exclusive=[('service', 'external')],
    required_one_of=[('service', 'external')],
    required_by={'service': 'namespace'},
)

MAX_CONTENT = 4000
KEPT_HEADERS = ('location', 'www-authenticate', 'content-type')


def proxy_path(namespace, service, port, path):
    """The API server's proxy path for a Service (and port, by name or number)."""
    target = '%s:%s' % (service, port) if port else service
    path = path if path.startswith('/') else '/' + path
    return '/api/v1/namespaces/%s/services/%s/proxy%s' % (quote(namespace, safe=''), quote(target, safe=':'), path)


def cookies_of(set_cookie_headers):
    """name=value pairs of Set-Cookie headers, for a Cookie header."""
    jar = SimpleCookie()
    for header in set_cookie_headers or []:
        try:
            jar.load(header)
        except Exception:  # pylint: disable=broad-except
            continue
    return '; '.join('%s=%s' % (name, morsel.value) for name, morsel in jar.items())


def body_of(raw):
    """(text truncated for the result, parsed JSON or None)."""
    text = raw.decode('utf-8', errors='replace') if isinstance(raw, bytes) else str(raw or '')
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return text[:MAX_CONTENT], parsed


def prometheus_targets(answer, apps=('istiod',)):
    """Istio's scrape targets among Prometheus' active targets (its
    ``/api/v1/targets`` answer): istiod's and the proxies' (``envoy-stats``)
    jobs, and pods labelled with an app of ``apps``; the ones up and the ones
    not, each with its scrape URL and Prometheus' lastError; and ``missing``,
    the apps of ``apps`` with no target up."""
    data = (answer or {}).get('data') if isinstance(answer, dict) else None
    found, up, down = [], [], []
    for target in (data or {}).get('activeTargets') or [] if isinstance(data, dict) else []:
        if not isinstance(target, dict):
            continue
        labels = target.get('labels') if isinstance(target.get('labels'), dict) else {}
        job = str(labels.get('job', target.get('scrapePool', '')))
        app = str(labels.get('app', ''))
        if not (app in apps or 'istio' in job or 'envoy' in job):
            continue
        entry = {'job': job, 'url': target.get('scrapeUrl', ''), 'health': target.get('health', 'unknown'),
                 'error': target.get('lastError', ''), 'app': app}
        found.append(entry)
        (up if entry['health'] == 'up' else down).append(entry)
    missing = [a for a in apps if not any(t['app'] == a for t in up)]
    return {'targets': found, 'up': up, 'down': down, 'missing': missing}


def describe_targets(summary):
    """One line on what ``prometheus_targets`` found, for progress and failures."""
    parts = []
    for app in summary['missing']:
        theirs = [t for t in summary['down'] if t['app'] == app]
        if theirs:
            parts.append('%s not up: %s' % (app, ', '.join(
                '%s (%s: %s)' % (t['url'], t['health'], t['error'] or (
                    'not scraped yet' if t['health'] == 'unknown' else 'no error')) for t in theirs)))
        else:
            parts.append('%s: no active target (is its pod annotated for scraping and Running?)' % app)
    others = [t for t in summary['down'] if t['app'] not in summary['missing']]
    if others:
        parts.append('also down: %s' % ', '.join('%s (%s)' % (t['url'], t['error'] or t['health']) for t in others))
    return '; '.join(parts) or 'every expected target up'


def local_source(address, port):
    """The address this host's kernel picks to reach ``address`` (a UDP
    "connect": no packet is sent), as the target sees it when no NAT is in between."""
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    try:
        infos = socket.getaddrinfo(address, port, family, socket.SOCK_DGRAM)
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(infos[0][4])
            return probe.getsockname()[0]
    except OSError:
        return ''


def source_inside(source, ranges):
    """Whether ``source`` is inside one of the CIDRs ``ranges``."""
    try:
        addr = ipaddress.ip_address(source)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(r, strict=False) for r in ranges)


class _SNIConnection(http.client.HTTPSConnection):
    """HTTPS to an address with another name as SNI (and the certificate's name check)."""

    def __init__(self, address, port, server_name, context, timeout):
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_name = server_name

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)


class ExternalClient:
    """Requests to ``external.host`` at ``external.address`` (a gateway's or a
    LoadBalancer's address: no DNS record needed), over HTTPS with SNI and the
    chain and name checked against ``ca_path`` (or the system's roots), or
    plain HTTP."""

    def __init__(self, external):
        self.host = external['host']
        self.address = external.get('address') or self.host
        self.scheme = external.get('scheme') or 'https'
        self.port = external.get('port') or (443 if self.scheme == 'https' else 80)
        self.ca_path = external.get('ca_path')
        self.last_headers = {}
        self.source = ''

    @staticmethod
    def token(service_account, namespace, expiration):
        del service_account, namespace, expiration
        raise ValueError('login.service_account needs a Service (the TokenRequest API), not an external address')

    def url(self, path):
        default = 443 if self.scheme == 'https' else 80
        return '%s://%s%s%s' % (self.scheme, self.host, '' if self.port == default else ':%d' % self.port, path)

    def request(self, method, path, query, headers, body=None, form=None, timeout=10):
        self.last_headers = {}
        if self.scheme == 'https':
            context = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else ssl.create_default_context()
            conn = _SNIConnection(self.address, self.port, self.host, context, timeout)
        else:
            conn = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        headers = dict(headers, Host=self.host if self.port in (80, 443) else '%s:%d' % (self.host, self.port))
        payload = None
        if form is not None:
            headers['Content-Type'] = 'application/x-www-form-urlencoded'
            payload = urlencode(form)
        elif body is not None:
            headers['Content-Type'] = 'application/json'
            payload = json.dumps(body)
        try:
            conn.connect()
            self.source = conn.sock.getsockname()[0]
            conn.request(method, path + (('?' + urlencode(query)) if query else ''), body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            self.last_headers = dict((k.lower(), v) for k, v in resp.getheaders() if k.lower() in KEPT_HEADERS)
            return resp.status, raw, [v for k, v in resp.getheaders() if k.lower() == 'set-cookie']
        finally:
            conn.close()


class ProxyClient:
    """The two calls the module makes, over a kubernetes ApiClient."""

    def __init__(self, api_client, kubernetes):
        self.api = api_client
        self.kubernetes = kubernetes
        self.last_headers = {}

    def request(self, method, path, query, headers, body=None, form=None, timeout=10):
        url = self.api.configuration.host + path + (('?' + urlencode(query)) if query else '')
        headers = dict(headers)
        self.api.update_params_for_auth(headers, [], ['BearerToken'], path, method, body)
        post_params = None
        if form is not None:
            headers['Content-Type'] = 'application/x-www-form-urlencoded'
            post_params = list(form.items())
        elif body is not None:
            headers['Content-Type'] = 'application/json'
        resp = self.api.rest_client.request(method, url, headers=headers, body=body, post_params=post_params,
                                            _request_timeout=timeout)
        raw = resp.read()
        set_cookies = resp.headers.getlist('Set-Cookie') if hasattr(resp.headers, 'getlist') else \
            [v for k, v in resp.headers.items() if k.lower() == 'set-cookie']
        self.last_headers = dict((k.lower(), v) for k, v in resp.headers.items() if k.lower() in KEPT_HEADERS)
        return resp.status, raw, set_cookies

    def token(self, service_account, namespace, expiration):
        core = self.kubernetes.client.CoreV1Api(self.api)
        spec = self.kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=max(600, expiration))
        got = core.create_namespaced_service_account_token(
            service_account, namespace, self.kubernetes.client.AuthenticationV1TokenRequest(spec=spec))
        return got.status.token


class _Retry(Exception):
    """The login did not succeed: try again until the deadline."""


def _answered(last):
    if last.get('status', -1) >= 0:
        return 'HTTP %s' % last['status']
    return 'no answer'


def run_external_or_proxy(params, progress=None):
    """The module's whole logic, its client built from ``params``: its result dict."""
    if params.get('external'):
        return run_service_proxy(params, ExternalClient(params['external']), progress=progress)
    # The Kubernetes client only for the service proxy (an external request needs none).
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.servicemesh.istio.plugins.module_utils._ready import _client_or_error
    api, failure = _client_or_error(params)
    if failure:
        return failure
    return run_service_proxy(params, ProxyClient(api, _k8s.kubernetes), progress=progress)


def run_service_proxy(params, client, sleep=time.sleep, now=time.monotonic, progress=None):
    """Call the Service (or the external address) until it answers one of
    the expected statuses (and, with ``expect_targets_up``, those targets are
    up) or ``timeout`` passes.

    Returns the module's result (``failed`` with a message naming the Service
    or URL, the path and what it answered)."""
    external = params.get('external')
    wanted = list(params.get('status') or [200])
    extra = {}
    if external:
        path = params.get('path') or '/'
        path = path if path.startswith('/') else '/' + path
        url = client.url(path)
        where = '%s:%s' % (client.address, client.port)
        source = external.get('source_address') or local_source(client.address, client.port)
        ranges = external.get('source_ranges') or []
        extra = {'source': source}
        how = 'at %s' % where
        if ranges and external.get('status_outside'):
            inside = source_inside(source, ranges)
            extra['source_inside'] = inside
            how += ' from %s, %s %s' % (source or 'an unknown address', 'inside' if inside else 'outside',
                                        ', '.join(ranges))
            if not inside:
                wanted = list(external['status_outside'])
        what = '%s (%s)' % (url, how)
        target = url
        through = ''
    else:
        path = proxy_path(params['namespace'], params['service'], params.get('port') or '', params.get('path') or '/')
        what = 'service %s/%s%s' % (params['namespace'], params['service'],
                                    (':%s' % params['port']) if params.get('port') else '')
        target = path
        through = ' through the API server\'s service proxy'
    apps = tuple(params.get('expect_targets_up') or ())
    login = params.get('login')
    token = []
    last = {}

    def attempt(_remaining):
        last.clear()
        try:
            headers = {'Accept': 'application/json, */*'}
            if login:
                fields = dict(login.get('fields') or {})
                if login.get('service_account'):
                    if not token:
                        token.append(client.token(login['service_account'],
                                                  login.get('service_account_namespace') or params['namespace'],
                                                  login.get('service_account_ttl') or 600))
                    fields[login.get('service_account_field') or 'token'] = token[0]
                login_path = login['path'] if external else proxy_path(
                    params['namespace'], params['service'], params.get('port') or '', login['path'])
                kind = {'body': fields} if login.get('format') == 'json' else {'form': fields}
                status, raw, cookies = client.request('POST', login_path, {}, headers,
                                                      timeout=params.get('request_timeout'), **kind)
                if status >= 400:
                    text, _parsed = body_of(raw)
                    last.update(status=status, content=text, stage='login at %s' % login['path'])
                    raise _Retry()
                jar = cookies_of(cookies)
                if jar:
                    headers['Cookie'] = jar
            status, raw, _cookies = client.request('GET', path, params.get('query') or {}, headers,
                                                   timeout=params.get('request_timeout'))
            text, parsed = body_of(raw)
            last.update(status=status, content=text, json=parsed, stage='request',
                        headers=dict(getattr(client, 'last_headers', {}) or {}))
            if status not in wanted:
                return 'retry', last
            if apps:
                summary = prometheus_targets(parsed, apps)
                last['targets'] = summary
                if summary['missing']:
                    return 'retry', last
            return 'ok', last
        except _Retry:
            return 'retry', last
        except Exception as exc:  # pylint: disable=broad-except
            text = str(exc).split('\n', maxsplit=1)[0][:MAX_CONTENT] or type(exc).__name__
            last.update(status=-1, content='%s: %s' % (type(exc).__name__, text) if external else text,
                        stage='request', error=type(exc).__name__)
            return 'ok' if -1 in wanted else 'retry', last

    def waiting_for(result):
        if result.get('targets'):
            return 'Prometheus\' targets (%s): %s' % (what, describe_targets(result['targets']))
        return '%s %s to answer HTTP %s (now: %s %s)' % (what, params.get('path') or '/', ' or '.join(
            str(s) for s in wanted), _answered(result), (result.get('content') or '')[:120].strip())

    wait_params = {'timeout': max(0, params.get('timeout') or 0), 'initial_sleep': 0.5, 'backoff_factor': 1.5,
                   'max_sleep': 5, 'progress_interval': params.get('progress_interval') or 0}
    outcome, last = _wait.wait_with_progress(attempt, wait_params, progress, waiting_for, clock=now, sleep=sleep)
    base = dict(extra, changed=False, status=last.get('status', -1), content=last.get('content', ''),
                json=last.get('json'), headers=last.get('headers', {}), attempts=outcome.attempts, url=target)
    if last.get('targets') is not None:
        base['targets'] = last['targets']
    if outcome.success:
        base['logged_in'] = bool(login)
        if last.get('status', -1) < 0:
            base['error'] = last.get('content', '')
        return base
    stage = last.get('stage', 'request')
    if stage == 'request' and last.get('targets') and last.get('status') in wanted:
        problem = 'the targets %s are not up: %s' % (
            ', '.join(last['targets']['missing']), describe_targets(last['targets']))
    else:
        problem = '%s %s, expected %s' % (_answered(last), (last.get('content') or '')[:500].strip(),
                                          ' or '.join('HTTP %s' % s if s >= 0 else 'no answer' for s in wanted))
    msg = '%s, %s %s (%s%s): %s; after %s attempt(s) in %s s.' % (
        what, 'GET' if stage == 'request' else 'POST',
        params.get('path') if stage == 'request' else login['path'], stage, through, problem, outcome.attempts,
        params.get('timeout'))
    return dict(base, failed=True, msg=msg)
