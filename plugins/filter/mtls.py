# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judgements of the servicemesh.istio.mtls_verify role, over objects as
kubernetes.core.k8s_info returns them: which DestinationRules STRICT mTLS would
break, what a client pod of the proof ended with, what the two clients prove,
and why the wait for the client pods ran out."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.plugin_utils._data import as_dict as _dict, as_list as _list

RISKY_TLS_MODES = ('DISABLE', 'SIMPLE')
NO_OUTPUT = '(no output: the termination message is empty and the log could not be read)'
TIMEOUT_ADVICE = ('On a real cluster look for image pulls (set mtls_verify_client_registry to a mirror), scheduling, or a\n'
                  'sidecar that never became ready; raise mtls_verify_client_timeout for slow pulls.')
_HTTP_CODE = re.compile(r'http_code=([0-9]{3})')


def _need_list(value, what, filter_name):
    if not isinstance(value, list):
        raise AnsibleFilterError('%s expects %s (a list), got %s' % (filter_name, what, type(value).__name__))
    return value


# ---------------------------------------------------------------------------
# DestinationRules that STRICT mTLS would break
# ---------------------------------------------------------------------------

def _host_in_scope(host, rule_namespace, scope, namespace, cluster_domain):
    """Whether a DestinationRule's host names an in-mesh Service in scope.

    A short name resolves in the rule's namespace; a wildcard counts when it
    covers such a Service's name. Scope ``mesh``: any Service of the cluster;
    scope ``namespace``: the Services of ``namespace`` only."""
    if '.' in host or host.startswith('*'):
        fqdn = host
    else:
        fqdn = '%s.%s.svc.%s' % (host, rule_namespace, cluster_domain)
    if scope == 'mesh':
        if fqdn.startswith('*') and ('x.y.svc.' + cluster_domain).endswith(fqdn[1:]):
            return True
        return fqdn.endswith('.svc.' + cluster_domain) or fqdn.endswith('.svc')
    if fqdn.startswith('*') and ('x.%s.svc.%s' % (namespace, cluster_domain)).endswith(fqdn[1:]):
        return True
    pattern = r'[^.*]+\.%s(\.svc(\.%s)?)?' % (re.escape(namespace), re.escape(cluster_domain))
    return re.fullmatch(pattern, fqdn) is not None


def _tls_levels(spec):
    """``(where, tls)`` for every level of a DestinationRule that can set TLS, in
    the order Istio documents them: traffic policy, its ports, then per subset
    the subset's policy and its ports. ``where`` is empty for the rule's own
    traffic policy."""
    policies = [('', _dict(spec.get('trafficPolicy')))]
    for subset in _list(spec.get('subsets')):
        subset = _dict(subset)
        policies.append(('subset %s' % subset.get('name', ''), _dict(subset.get('trafficPolicy'))))
    for where, policy in policies:
        yield where, _dict(policy.get('tls'))
        for port in _list(policy.get('portLevelSettings')):
            port = _dict(port)
            number = _dict(port.get('port')).get('number')
            port_where = 'port %s' % ('?' if number is None else number)
            yield (where + ', ' + port_where) if where else port_where, _dict(port.get('tls'))


def destination_rule_risks(rules, scope, namespace, cluster_domain='cluster.local'):
    """One line per DestinationRule level whose ``tls.mode`` is DISABLE or SIMPLE
    for a host in scope: ``<ns>/<name> (host <host>[, <where>]): tls.mode <mode>``."""
    _need_list(rules, 'the DestinationRules k8s_info returns', 'destination_rule_risks')
    if scope not in ('namespace', 'mesh'):
        raise AnsibleFilterError("destination_rule_risks: scope must be 'namespace' or 'mesh', got %r" % (scope,))
    out = []
    for rule in rules:
        rule = _dict(rule)
        meta = _dict(rule.get('metadata'))
        spec = _dict(rule.get('spec'))
        host = spec.get('host') or ''
        if not _host_in_scope(host, meta.get('namespace', ''), scope, namespace, cluster_domain):
            continue
        for where, tls in _tls_levels(spec):
            mode = tls.get('mode')
            if mode in RISKY_TLS_MODES:
                out.append('%s/%s (host %s%s): tls.mode %s' % (
                    meta.get('namespace', ''), meta.get('name', ''), host, (', ' + where) if where else '', mode))
    return out


# ---------------------------------------------------------------------------
# The client pods of the proof
# ---------------------------------------------------------------------------

def _pod_named(pods, name):
    for pod in pods:
        if _dict(_dict(pod).get('metadata')).get('name') == name:
            return _dict(pod)
    return None


def _container_status(status, name):
    for item in _list(status.get('containerStatuses')):
        if _dict(item).get('name') == name:
            return _dict(item)
    return None


def _as_int(value):
    """As Jinja's ``int`` filter: 0 for what is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0


def _text(value):
    return '' if value is None else str(value)


def client_outcome(pods, name, logs=None):
    """What the client pod ``name`` ended with: ``{name, exit_code, output, http_status}``.

    ``exit_code``: of its container ``client``, None if it never terminated.
    ``output``: the termination message, else the log read with
    kubernetes.core.k8s_log (``logs``: that task's loop results), else a note
    that there is none. ``http_status``: from ``http_code=NNN`` in the output;
    200 when the client exited 0 without saying; None when it got no HTTP answer."""
    _need_list(pods, 'the pods k8s_info returns', 'client_outcome')
    pod = _pod_named(pods, name)
    client = _container_status(_dict(pod.get('status')), 'client') if pod else None
    terminated = _dict(_dict(client.get('state')).get('terminated')) if client else {}
    message = _text(terminated.get('message')).strip() if terminated else ''
    log = ''
    for result in _list(logs):
        result = _dict(result)
        if result.get('item') == name and 'log' in result:
            log = _text(result['log']).strip()
            break
    output = message or log or NO_OUTPUT
    exit_code = _as_int(terminated.get('exitCode')) if terminated else None
    found = _HTTP_CODE.search(output)
    if found and found.group(1) != '000':
        http_status = int(found.group(1))
    else:
        http_status = 200 if exit_code == 0 else None
    return {'name': name, 'exit_code': exit_code, 'output': output, 'http_status': http_status}


def _pod_finished(status):
    """A client pod is done when its container ``client`` has terminated or the
    pod has ended; not when its deadline stopped it (its containers were killed)."""
    client = _container_status(status, 'client')
    finished = bool(client and 'terminated' in _dict(client.get('state'))) \
        or status.get('phase') in ('Succeeded', 'Failed')
    return finished and status.get('reason') != 'DeadlineExceeded'


def _container_text(container):
    state = _dict(container.get('state'))
    first = next(iter(state), '')
    waiting = state.get('waiting')
    reason = ' (%s)' % _text(_dict(waiting).get('reason')) if 'waiting' in state else ''
    return ' %s %s%s' % (_text(container.get('name')), first, reason)


def _unfinished_text(pod, namespace, timeout, events):
    status = _dict(pod.get('status'))
    meta = _dict(pod.get('metadata'))
    name = meta.get('name')
    containers = [_dict(c) for c in _list(status.get('containerStatuses')) + _list(status.get('initContainerStatuses'))]
    container_text = ','.join(_container_text(c) for c in containers) if containers else ' none'
    not_true = [_text(_dict(c).get('type')) for c in _list(status.get('conditions')) if _dict(c).get('status') != 'True']
    uid = meta.get('uid')
    own = [_dict(e) for e in events
           if 'uid' in _dict(_dict(e).get('involvedObject')) and _dict(e)['involvedObject']['uid'] == uid]
    own.sort(key=lambda e: _text(_dict(e.get('metadata')).get('creationTimestamp')).lower())
    event_text = ''.join(' [%s] %s;' % (_text(e.get('reason')), _text(e.get('message'))) for e in own) or ' none.'
    return (' client pod %s/%s did not finish within %s s\n'
            ' (phase %s%s;\n'
            ' node %s; containers:%s; conditions not true: %s). Events:%s') % (
        namespace, name, timeout,
        status.get('phase', '?'), (', %s' % status['reason']) if 'reason' in status else '',
        _dict(pod.get('spec')).get('nodeName', 'none'),
        container_text, ', '.join(not_true) or 'none', event_text)


def client_timeout_message(pods, names, events, namespace, timeout):
    """Why the wait for the client pods ended without an outcome: per client pod
    (``names``, in order) that did not finish, its phase, node, container
    states, the conditions that are not true and its own events (not those of
    an earlier pod of the same name), oldest first."""
    _need_list(pods, 'the pods k8s_info returns', 'client_timeout_message')
    _need_list(events, 'the events k8s_info returns', 'client_timeout_message')
    lines = []
    for name in names:
        pod = _pod_named(pods, name)
        if pod is None:
            lines.append(' client pod %s/%s is gone.' % (namespace, name))
        elif _pod_finished(_dict(pod.get('status'))):
            lines.append(' client pod %s/%s finished.' % (namespace, name))
        else:
            lines.append(_unfinished_text(pod, namespace, timeout, events))
    return 'Timeout:\n' + ''.join(lines) + '\n' + TIMEOUT_ADVICE


# ---------------------------------------------------------------------------
# The verdict of the proof
# ---------------------------------------------------------------------------

def _need_outcome(outcomes, client):
    outcome = outcomes.get(client) if isinstance(outcomes, Mapping) else None
    if not isinstance(outcome, Mapping):
        raise AnsibleFilterError('mtls_proof_verdict expects {plaintext: outcome, sidecar: outcome} as client_outcome '
                                 'returns them; %s is missing' % client)
    return outcome


def mtls_proof_verdict(outcomes, mode, refused_exit_codes, namespace, target_url, policy, other_status_exit_code=100):
    """The verdict of the two clients' outcomes (``{plaintext, sidecar}``, as
    client_outcome returns them): whether mTLS is enforced, the problems found
    (each a sentence saying what to check) and a one-line summary."""
    plaintext, sidecar = _need_outcome(outcomes, 'plaintext'), _need_outcome(outcomes, 'sidecar')
    refused = list(refused_exit_codes)
    negative, positive = plaintext.get('exit_code'), sidecar.get('exit_code')
    status = sidecar.get('http_status')
    status_text = 'none' if status is None else status
    enforced = mode == 'STRICT' and negative in refused
    problems = []
    if mode == 'STRICT' and not enforced:
        if negative in (0, other_status_exit_code):
            problems.append(
                'mTLS is not enforced: the client without a sidecar (%s/%s) got an HTTP answer in plaintext from %s'
                ' (exit code %s; output: %s). Look for a PeerAuthentication that overrides %s (workload selector,'
                ' portLevelMtls) and check the target pods have their sidecar.'
                % (namespace, plaintext.get('name'), target_url, negative, plaintext.get('output'), policy))
        else:
            problems.append(
                'Inconclusive: the client without a sidecar (%s/%s) could not reach %s at all (exit code %s, expected'
                ' one of %s = connection reset by the sidecar; output: %s), which proves nothing about mTLS. Check the'
                ' URL, the Service and its pods.'
                % (namespace, plaintext.get('name'), target_url, negative, ', '.join(str(c) for c in refused),
                   plaintext.get('output')))
    if positive != 0:
        problems.append(
            'The mesh is broken: the client with a sidecar (%s/%s) did not get HTTP 200 from %s (exit code %s,'
            ' HTTP status %s). Client output: %s Check the target pods are Ready with istio-proxy, istiod is running,'
            ' and no DestinationRule disables mTLS.'
            % (namespace, sidecar.get('name'), target_url, positive, status_text, sidecar.get('output')))
    message = '%s (%s): the plaintext client %s with exit code %s, the sidecar client got HTTP %s.' % (
        'mTLS STRICT is enforced' if enforced else 'mTLS mode %s' % mode, policy,
        'was refused' if enforced else 'ended', '' if negative is None else negative, status_text)
    return {
        'proven': True,
        'enforced': enforced,
        'negative_exit_code': negative,
        'negative_output': plaintext.get('output'),
        'positive_exit_code': positive,
        'positive_status': status,
        'positive_output': sidecar.get('output'),
        'problems': problems,
        'message': message,
    }


class FilterModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio filters for the mTLS checks."""

    def filters(self):
        return {
            'destination_rule_risks': destination_rule_risks,
            'client_outcome': client_outcome,
            'client_timeout_message': client_timeout_message,
            'mtls_proof_verdict': mtls_proof_verdict,
        }
