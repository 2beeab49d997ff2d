# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""Kubernetes access for servicemesh.istio modules with the ``kubernetes``
Python client: an argument spec mirroring kubernetes.core's connection
options (documented by the ``kubernetes.core.k8s_auth_options`` fragment),
the client built from them (with the same K8S_AUTH_* environment fallbacks),
and readers for cert-manager objects and TLS Secrets.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import traceback


class _ApiExceptionPlaceholder(Exception):
    """Stands for kubernetes.client.exceptions.ApiException until the client is imported."""
    status = None


# The kubernetes client is imported on first use (import_kubernetes()): it
# takes a third of a second and ~25 MiB, which a module that only checks a
# served certificate does not need to pay.
kubernetes = None  # pylint: disable=invalid-name
ApiException = _ApiExceptionPlaceholder  # pylint: disable=invalid-name
urllib3 = None  # pylint: disable=invalid-name


def import_kubernetes():
    """Import the kubernetes client; return None, or the ImportError's traceback."""
    global kubernetes, ApiException, urllib3  # pylint: disable=global-statement
    if kubernetes is not None:
        return None
    try:
        kubernetes_module = importlib.import_module('kubernetes')
        importlib.import_module('kubernetes.client')
        importlib.import_module('kubernetes.config')
        api_exception = importlib.import_module('kubernetes.client.exceptions').ApiException
    except ImportError:
        return traceback.format_exc()
    try:
        urllib3_module = importlib.import_module('urllib3')
    except ImportError:
        urllib3_module = None
    kubernetes = kubernetes_module
    ApiException = api_exception
    urllib3 = urllib3_module
    return None


PROXY_HEADERS_SPEC = dict(
    proxy_basic_auth=dict(type='str', no_log=True),
    basic_auth=dict(type='str', no_log=True),
    user_agent=dict(type='str'),
)

# Same names, types, aliases and no_log as kubernetes.core's AUTH_ARG_SPEC.
AUTH_ARG_SPEC = dict(
    kubeconfig=dict(type='raw', no_log=True),
    context=dict(type='str'),
    host=dict(type='str'),
    api_key=dict(type='str', no_log=True),
    username=dict(type='str'),
    password=dict(type='str', no_log=True),
    validate_certs=dict(type='bool', aliases=['verify_ssl']),
    ca_cert=dict(type='path', aliases=['ssl_ca_cert']),
    client_cert=dict(type='path', aliases=['cert_file']),
    client_key=dict(type='path', aliases=['key_file'], no_log=False),
    proxy=dict(type='str'),
    no_proxy=dict(type='str'),
    proxy_headers=dict(type='dict', options=PROXY_HEADERS_SPEC),
    persist_config=dict(type='bool'),
    impersonate_user=dict(type='str'),
    impersonate_groups=dict(type='list', elements='str'),
)

# module option -> kubernetes.client.Configuration attribute
_CONFIG_ATTRIBUTES = {
    'host': 'host',
    'username': 'username',
    'password': 'password',
    'validate_certs': 'verify_ssl',
    'ca_cert': 'ssl_ca_cert',
    'client_cert': 'cert_file',
    'client_key': 'key_file',
    'proxy': 'proxy',
    'no_proxy': 'no_proxy',
}

_ENV_NAMES = {
    'kubeconfig': ['K8S_AUTH_KUBECONFIG'],
    'context': ['K8S_AUTH_CONTEXT'],
    'host': ['K8S_AUTH_HOST'],
    'api_key': ['K8S_AUTH_API_KEY'],
    'username': ['K8S_AUTH_USERNAME'],
    'password': ['K8S_AUTH_PASSWORD'],
    'validate_certs': ['K8S_AUTH_VALIDATE_CERTS', 'K8S_AUTH_VERIFY_SSL'],
    'ca_cert': ['K8S_AUTH_CA_CERT', 'K8S_AUTH_SSL_CA_CERT'],
    'client_cert': ['K8S_AUTH_CLIENT_CERT', 'K8S_AUTH_CERT_FILE'],
    'client_key': ['K8S_AUTH_CLIENT_KEY', 'K8S_AUTH_KEY_FILE'],
    'proxy': ['K8S_AUTH_PROXY'],
    'no_proxy': ['K8S_AUTH_NO_PROXY'],
    'persist_config': ['K8S_AUTH_PERSIST_CONFIG'],
    'impersonate_user': ['K8S_AUTH_IMPERSONATE_USER'],
    'impersonate_groups': ['K8S_AUTH_IMPERSONATE_GROUPS'],
}


class KubeConfigError(Exception):
    """The connection options do not give a usable client."""


def auth_params(params, environ=None):
    """Connection options, with K8S_AUTH_* environment variables filling the gaps."""
    environ = os.environ if environ is None else environ
    auth = {}
    for option in AUTH_ARG_SPEC:
        value = params.get(option)
        if value is None and option in _ENV_NAMES:
            for env in _ENV_NAMES[option]:
                if environ.get(env) is not None:
                    value = environ[env]
                    if AUTH_ARG_SPEC[option].get('type') == 'bool':
                        value = value.lower() not in ('0', 'false', 'no', 'off', '')
                    elif AUTH_ARG_SPEC[option].get('type') == 'list':
                        value = [v for v in value.split(',') if v]
                    break
        if option == 'proxy_headers' and value is None:
            headers = {}
            for key in PROXY_HEADERS_SPEC:
                env_value = environ.get('K8S_AUTH_PROXY_HEADERS_%s' % key.upper())
                if env_value is not None:
                    headers[key] = env_value
            value = headers or None
        if value is not None:
            auth[option] = value
    return auth


def missing_kubeconfig(params, environ=None):
    """A message naming the kubeconfig file(s) and where the path came from when
    none of them exists, else ``None``.

    The kubernetes client silently skips kubeconfig files that do not exist and
    then says only "No configuration found"; this says which path was read and
    which setting gave it.
    """
    environ = os.environ if environ is None else environ
    if params.get('kubeconfig') is not None:
        value, source = params['kubeconfig'], 'the kubeconfig option'
    elif environ.get('K8S_AUTH_KUBECONFIG') is not None:
        value, source = environ['K8S_AUTH_KUBECONFIG'], 'K8S_AUTH_KUBECONFIG'
    elif params.get('host') or environ.get('K8S_AUTH_HOST') or environ.get('KUBERNETES_SERVICE_HOST'):
        return None
    elif environ.get('KUBECONFIG'):
        value, source = environ['KUBECONFIG'], 'KUBECONFIG'
    else:
        value, source = '~/.kube/config', "the default, as no kubeconfig option, K8S_AUTH_KUBECONFIG or KUBECONFIG is set"
    if not isinstance(value, str) or not value:
        return None
    paths = [p for p in value.split(os.pathsep) if p]
    if any(os.path.exists(os.path.expanduser(p)) for p in paths):
        return None
    return 'the kubeconfig file %s does not exist (from %s)' % (
        ', '.join("'%s'" % p for p in paths), source)


def build_api_client(params, environ=None):
    """A ``kubernetes.client.ApiClient`` configured like kubernetes.core does."""
    auth = auth_params(params, environ)

    def have(*names):
        return all(auth.get(name) for name in names)

    if have('host'):
        auth['host'] = auth['host'].rstrip('/')
    configuration = kubernetes.client.Configuration()
    explicit = have('host', 'api_key') or have('host', 'username', 'password') \
        or have('host', 'client_cert', 'client_key')
    try:
        if not explicit:
            optional = dict(context=auth.get('context'), client_configuration=configuration)
            if auth.get('persist_config') is not None:
                optional['persist_config'] = auth['persist_config']
            kubeconfig = auth.get('kubeconfig')
            missing = missing_kubeconfig(params, environ)
            if missing and not have('host'):
                raise KubeConfigError(missing)
            if isinstance(kubeconfig, dict):
                kubernetes.config.load_kube_config_from_dict(config_dict=kubeconfig, **optional)
            elif kubeconfig or auth.get('context'):
                kubernetes.config.load_kube_config(config_file=kubeconfig, **optional)
            else:
                try:
                    kubernetes.config.load_incluster_config(client_configuration=configuration)
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config(**optional)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise KubeConfigError('cannot load the Kubernetes configuration: %s' % exc)
    for option, attribute in _CONFIG_ATTRIBUTES.items():
        if auth.get(option) is not None:
            setattr(configuration, attribute, auth[option])
    if auth.get('api_key'):
        configuration.api_key = {'authorization': 'Bearer %s' % auth['api_key']}
        configuration.api_key_prefix = {}
    if auth.get('proxy_headers') and urllib3 is not None:
        configuration.proxy_headers = urllib3.util.make_headers(**auth['proxy_headers'])
    if not configuration.host:
        raise KubeConfigError('no Kubernetes API server: give host, kubeconfig or context')
    client = kubernetes.client.ApiClient(configuration)
    if auth.get('impersonate_user'):
        client.set_default_header('Impersonate-User', auth['impersonate_user'])
    if auth.get('impersonate_groups'):
        client.set_default_header('Impersonate-Group', ','.join(auth['impersonate_groups']))
    return client


def api_error_text(exc):
    """Short text of an ApiException or connection error, without the response headers."""
    if isinstance(exc, ApiException):
        reason = getattr(exc, 'reason', '') or ''
        message = ''
        body = getattr(exc, 'body', None)
        if body:
            try:
                message = json.loads(body).get('message', '')
            except (ValueError, AttributeError):
                message = ''
        return 'HTTP %s %s%s' % (exc.status, reason, (': %s' % message) if message else '')
    return str(exc).split('\n', maxsplit=1)[0]


def transport_error_text(exc):
    """The innermost reason of a connection error, in one line: urllib3 wraps
    it (MaxRetryError, then NewConnectionError, whose text starts with the
    connection's repr, "HTTPSConnection(host='...', port=...): ")."""
    seen = 0
    while getattr(exc, 'reason', None) is not None and seen < 5:
        exc, seen = exc.reason, seen + 1
    text = str(exc).split('\n', maxsplit=1)[0] or exc.__class__.__name__
    return re.sub(r"^<?[A-Za-z]*Connection(Pool)?(\(host=[^)]*\)| object at 0x[0-9a-f]+>):\s*", '', text)


# What a client prints when the API server did not answer or went away
# mid-request (Go's HTTP client and client-go as Helm prints them, urllib3 and
# http.client as the kubernetes Python client raises them, and the API server
# itself while it starts): worth another try. Errors from an API server that
# answered (a refused object, RBAC) are not here.
TRANSIENT_API_ERROR = re.compile(
    r"connection refused|connection reset by peer|broken pipe|i/o timeout|TLS handshake timeout"
    r"|http2: (?:client connection lost|server sent GOAWAY)|unexpected EOF|: EOF\b|Kubernetes cluster unreachable"
    r"|Connection aborted|RemoteDisconnected|Remote end closed connection|Failed to establish a new connection"
    r"|Read timed out|the server is currently unable to handle the request"
    r"|etcdserver: (?:request timed out|leader changed)|the server was unable to return a response in the time allotted"
    r"|Client\.Timeout exceeded|the server has received too many requests",
    re.IGNORECASE,
)


def transient_api_error(text):
    """The first line of ``text`` that says the API server did not answer, or ''."""
    for line in str(text).splitlines():
        if TRANSIENT_API_ERROR.search(line):
            return line.strip().lstrip('*').strip()[:300]
    return ''


def is_fatal_api_error(exc):
    """Authentication and authorization errors will not go away by waiting."""
    return isinstance(exc, ApiException) and exc.status in (401, 403)


CERT_MANAGER = ('cert-manager.io', 'v1')
ACME = ('acme.cert-manager.io', 'v1')


class CertManagerReader:
    """Reads cert-manager objects and Secrets; ``None`` for a 404."""

    def __init__(self, api_client, request_timeout=10):
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.timeout = request_timeout

    def _get_custom(self, group_version, namespace, plural, name):
        try:
            return self.custom.get_namespaced_custom_object(
                group_version[0], group_version[1], namespace, plural, name, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _list_custom(self, group_version, namespace, plural):
        try:
            result = self.custom.list_namespaced_custom_object(
                group_version[0], group_version[1], namespace, plural, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return result.get('items', [])

    def certificate(self, namespace, name):
        return self._get_custom(CERT_MANAGER, namespace, 'certificates', name)

    def certificate_requests(self, namespace):
        return self._list_custom(CERT_MANAGER, namespace, 'certificaterequests')

    def orders(self, namespace):
        return self._list_custom(ACME, namespace, 'orders')

    def challenges(self, namespace):
        return self._list_custom(ACME, namespace, 'challenges')

    def secret_data(self, namespace, name):
        """``(type, {key: bytes})`` of a Secret, or ``None`` when it does not exist."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = {}
        for key, value in (secret.data or {}).items():
            try:
                data[key] = base64.b64decode(value or '')
            except (ValueError, TypeError):
                data[key] = b''
        return secret.type, data


# --------------------------------------------------------------------------
# Interpreting cert-manager objects (pure functions)
# --------------------------------------------------------------------------

def condition(obj, cond_type):
    for cond in ((obj or {}).get('status') or {}).get('conditions') or []:
        if cond.get('type') == cond_type:
            return cond
    return None


def describe_condition(cond):
    text = '%s=%s' % (cond.get('type'), cond.get('status'))
    details = [d for d in (cond.get('reason'), cond.get('message')) if d]
    if details:
        text += ' (%s)' % ': '.join(details)
    return text


def certificate_readiness(cert):
    """``(ready, reasons, notes)`` for a cert-manager Certificate object.

    Ready means a ``Ready`` condition with status ``True`` that was observed
    for the current generation of the spec, and a ``status.notAfter``.
    ``reasons`` say why it is not ready; ``notes`` tell about a renewal in
    progress or failed attempts, which do not make a ready certificate unready.
    """
    reasons = []
    notes = []
    status = cert.get('status') or {}
    ready = condition(cert, 'Ready')
    generation = (cert.get('metadata') or {}).get('generation')
    if ready is None:
        reasons.append('it has no Ready condition yet')
    elif ready.get('status') != 'True':
        reasons.append(describe_condition(ready))
    elif generation is not None and ready.get('observedGeneration') is not None \
            and ready['observedGeneration'] < generation:
        reasons.append('Ready=True is for generation %s, the spec is at generation %s' % (
            ready['observedGeneration'], generation))
    if not reasons and not status.get('notAfter'):
        reasons.append('status.notAfter is not set')
    issuing = condition(cert, 'Issuing')
    if issuing is not None and issuing.get('status') == 'True':
        notes.append(describe_condition(issuing))
    if status.get('failedIssuanceAttempts'):
        notes.append('%s failed issuance attempt(s), the last at %s' % (
            status['failedIssuanceAttempts'], status.get('lastFailureTime', 'an unknown time')))
    return not reasons, reasons, notes


def _owned_by(obj, uid, kind=None):
    for ref in (obj.get('metadata') or {}).get('ownerReferences') or []:
        if ref.get('uid') == uid and (kind is None or ref.get('kind') == kind):
            return True
    return False


def _revision(obj):
    annotations = (obj.get('metadata') or {}).get('annotations') or {}
    try:
        return int(annotations.get('cert-manager.io/certificate-revision', 0))
    except ValueError:
        return 0


def _sort_key(obj):
    return (_revision(obj), (obj.get('metadata') or {}).get('creationTimestamp') or '')


def latest_certificate_request(cert, requests):
    meta = cert.get('metadata') or {}
    name = meta.get('name')
    uid = meta.get('uid')
    mine = [r for r in requests
            if (uid and _owned_by(r, uid)) or
            ((r.get('metadata') or {}).get('annotations') or {}).get('cert-manager.io/certificate-name') == name]
    return max(mine, key=_sort_key) if mine else None


def issuance_details(cert, requests, orders, challenges):
    """Words about the latest CertificateRequest and its ACME Order and Challenges."""
    details = []
    request = latest_certificate_request(cert, requests)
    if request is None:
        return details
    rname = request['metadata']['name']
    conds = [describe_condition(c) for c in (request.get('status') or {}).get('conditions') or []]
    details.append('latest CertificateRequest %s: %s' % (rname, '; '.join(conds) if conds else 'no conditions yet'))
    ruid = request['metadata'].get('uid')
    my_orders = [o for o in orders if ruid and _owned_by(o, ruid)]
    if not my_orders:
        return details
    order = max(my_orders, key=_sort_key)
    ostatus = order.get('status') or {}
    text = 'Order %s: state %s' % (order['metadata']['name'], ostatus.get('state') or 'unknown')
    if ostatus.get('reason'):
        text += ' (%s)' % ostatus['reason']
    details.append(text)
    ouid = order['metadata'].get('uid')
    for challenge in sorted((c for c in challenges if ouid and _owned_by(c, ouid)),
                            key=lambda c: c['metadata']['name']):
        spec = challenge.get('spec') or {}
        cstatus = challenge.get('status') or {}
        text = 'Challenge %s (%s, %s): state %s' % (
            challenge['metadata']['name'], spec.get('dnsName', '?'), spec.get('type', '?'),
            cstatus.get('state') or 'unknown')
        if cstatus.get('reason'):
            text += ' (%s)' % cstatus['reason']
        details.append(text)
    return details
