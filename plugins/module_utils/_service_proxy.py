# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""Requests to a Service through the Kubernetes API server's service proxy
(``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/<path>``): no
port-forward, and it works whatever the Service's exposure. An optional login
first (a form or JSON POST whose cookies the request then carries), with a
short-lived ServiceAccount token from the TokenRequest API when asked; the
credentials never leave this code."""

from __future__ import annotations

import json
import time
from http.cookies import SimpleCookie
from urllib.parse import quote, urlencode

SERVICE_PROXY_SPEC = dict(
    namespace=dict(type='str', required=True),
    service=dict(type='str', required=True),
    port=dict(type='str', default=''),
    path=dict(type='str', default='/'),
    query=dict(type='dict', default={}),
    status=dict(type='list', elements='int', default=[200]),
    timeout=dict(type='int', default=60),
    request_timeout=dict(type='int', default=10),
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

MAX_CONTENT = 4000


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


class ProxyClient:
    """The two calls the module makes, over a kubernetes ApiClient."""

    def __init__(self, api_client, kubernetes):
        self.api = api_client
        self.kubernetes = kubernetes

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
        return resp.status, raw, set_cookies

    def token(self, service_account, namespace, expiration):
        core = self.kubernetes.client.CoreV1Api(self.api)
        spec = self.kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=max(600, expiration))
        got = core.create_namespaced_service_account_token(
            service_account, namespace, self.kubernetes.client.AuthenticationV1TokenRequest(spec=spec))
        return got.status.token


def run_service_proxy(params, client, sleep=time.sleep, now=time.monotonic):
    """Call the Service until it answers one of ``status`` or ``timeout`` passes.

    Returns the module's result (``failed`` with a message naming the Service,
    the path and what it answered)."""
    path = proxy_path(params['namespace'], params['service'], params.get('port') or '', params.get('path') or '/')
    what = 'service %s/%s%s' % (params['namespace'], params['service'],
                                (':%s' % params['port']) if params.get('port') else '')
    wanted = params.get('status') or [200]
    deadline = now() + max(0, params.get('timeout') or 0)
    login = params.get('login')
    token = None
    attempts, delay = 0, 0.5
    last = {}
    while True:
        attempts += 1
        try:
            headers = {'Accept': 'application/json, */*'}
            if login:
                fields = dict(login.get('fields') or {})
                if login.get('service_account'):
                    if token is None:
                        token = client.token(login['service_account'],
                                             login.get('service_account_namespace') or params['namespace'],
                                             login.get('service_account_ttl') or 600)
                    fields[login.get('service_account_field') or 'token'] = token
                login_path = proxy_path(params['namespace'], params['service'], params.get('port') or '',
                                        login['path'])
                if login.get('format') == 'json':
                    status, raw, cookies = client.request('POST', login_path, {}, headers, body=fields,
                                                          timeout=params.get('request_timeout'))
                else:
                    status, raw, cookies = client.request('POST', login_path, {}, headers, form=fields,
                                                          timeout=params.get('request_timeout'))
                if status >= 400:
                    text, _parsed = body_of(raw)
                    last = {'status': status, 'content': text, 'stage': 'login at %s' % login['path']}
                    raise _Retry()
                jar = cookies_of(cookies)
                if jar:
                    headers['Cookie'] = jar
            status, raw, _cookies = client.request('GET', path, params.get('query') or {}, headers,
                                                   timeout=params.get('request_timeout'))
            text, parsed = body_of(raw)
            last = {'status': status, 'content': text, 'json': parsed, 'stage': 'request'}
            if status in wanted:
                return {'changed': False, 'status': status, 'content': text, 'json': parsed, 'attempts': attempts,
                        'url': path, 'logged_in': bool(login)}
        except _Retry:
            pass
        except Exception as exc:  # pylint: disable=broad-except
            last = {'status': -1, 'content': str(exc).split('\n', maxsplit=1)[0][:MAX_CONTENT],
                    'stage': 'request', 'error': type(exc).__name__}
        if now() >= deadline:
            break
        sleep(min(delay, max(0.0, deadline - now())))
        delay = min(delay * 1.5, 5)
    stage = last.get('stage', 'request')
    answered = ('HTTP %s' % last.get('status')) if last.get('status', -1) >= 0 else 'no answer'
    msg = ('%s, %s %s (%s through the API server\'s service proxy): %s %s, expected HTTP %s; after %s attempt(s) '
           'in %s s.' % (what, 'GET' if stage == 'request' else 'POST', params.get('path') if stage == 'request'
                         else login['path'], stage, answered, (last.get('content') or '')[:500].strip(),
                         ' or '.join(str(s) for s in wanted), attempts, params.get('timeout')))
    return {'failed': True, 'changed': False, 'msg': msg, 'status': last.get('status', -1),
            'content': last.get('content', ''), 'json': last.get('json'), 'attempts': attempts, 'url': path}


class _Retry(Exception):
    """The login did not succeed: try again until the deadline."""
