# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""``istioctl analyze`` for servicemesh.istio.istio_analyze: the command line,
the parsing of its JSON output, the scope (namespaces) and the verdict.

Everything here is pure (no process is started), so that the judgement is unit
tested on recorded output; the module runs the commands.
"""

from __future__ import annotations

import json
import re

LEVELS = ('Error', 'Warning', 'Info')
CODE_RE = re.compile(r'^IST[0-9]{4}$')
# istioctl's "friendly name" of an object: "<Kind> <namespace>/<name>" for a
# namespaced object, "<Kind> <name>" for a cluster-scoped one.
_ORIGIN_RE = re.compile(r'^(?P<kind>\S+) (?:(?P<namespace>[^/\s]+)/)?(?P<name>\S+)$')
_NAMESPACE_RE = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')

ARGUMENT_SPEC = dict(
    istioctl=dict(type='str', default='istioctl'),
    required=dict(type='bool', default=False),
    namespaces=dict(type='list', elements='str', default=[]),
    istio_namespace=dict(type='str', default='istio-system'),
    revision=dict(type='str', default=''),
    accept=dict(type='dict', default={}),
    fail_on_warnings=dict(type='bool', default=False),
    timeout=dict(type='int', default=60),
    kubeconfig=dict(type='raw', no_log=True),
    context=dict(type='str'),
)

ENV_FALLBACKS = {
    'kubeconfig': 'K8S_AUTH_KUBECONFIG',
    'context': 'K8S_AUTH_CONTEXT',
}


def check_params(params):
    """Problems with the options, each naming the option; [] when they are fine."""
    problems = []
    accept = params.get('accept') or {}
    for code, reason in sorted(accept.items()):
        if not CODE_RE.match(str(code)):
            problems.append("accept: '%s' is not an analyzer message code (IST followed by four digits, "
                            "e.g. IST0102)" % code)
        if not isinstance(reason, str) or not reason.strip():
            problems.append('accept: %s needs a reason (a non-empty string saying why it is accepted)' % code)
    for namespace in params.get('namespaces') or []:
        if not _NAMESPACE_RE.match(namespace):
            problems.append("namespaces: '%s' is not a valid namespace name" % namespace)
    if not _NAMESPACE_RE.match(params.get('istio_namespace') or ''):
        problems.append("istio_namespace: '%s' is not a valid namespace name" % params.get('istio_namespace'))
    if (params.get('timeout') or 0) < 1:
        problems.append('timeout: must be at least 1 (seconds), got %s' % params.get('timeout'))
    return problems


def analyze_command(binary, params, kubeconfig_path=None):
    """The argv of one ``istioctl analyze`` over every namespace (-A), as JSON.

    The analysis reads every namespace whatever is asked (istioctl filters its
    messages afterwards), so one run over all of them costs no more than one
    per namespace; :func:`in_scope` then keeps the namespaces asked for.
    """
    argv = [binary, 'analyze', '--all-namespaces', '--output', 'json', '--color=false',
            '--istioNamespace', params['istio_namespace'], '--timeout', '%ds' % params['timeout']]
    if params.get('revision'):
        argv += ['--revision', params['revision']]
    if kubeconfig_path:
        argv += ['--kubeconfig', kubeconfig_path]
    if params.get('context'):
        argv += ['--context', params['context']]
    return argv


def version_command(binary):
    return [binary, 'version', '--remote=false', '--output', 'json']


def parse_version(stdout):
    """The client version ``istioctl version --remote=false -o json`` prints; '' when unreadable."""
    try:
        return str(json.loads(stdout)['clientVersion']['version'])
    except (ValueError, KeyError, TypeError):
        return ''


def parse_origin(origin):
    """(kind, namespace, name) of an istioctl origin string; namespace '' when cluster-scoped."""
    found = _ORIGIN_RE.match(origin or '')
    if not found:
        return '', '', origin or ''
    return found.group('kind'), found.group('namespace') or '', found.group('name')


def parse_messages(stdout):
    """The messages of ``istioctl analyze -o json``, normalised.

    Raises ValueError when the output is not the JSON list istioctl prints.
    """
    text = (stdout or '').strip()
    if not text:
        raise ValueError('istioctl printed nothing on stdout')
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError('istioctl did not print JSON (%s): %s' % (exc, text[:300]))
    if raw is None:  # Go's encoding of an empty (nil) message list
        raw = []
    if not isinstance(raw, list):
        raise ValueError('istioctl printed JSON that is not a list of messages: %s' % text[:300])
    messages = []
    for item in raw:
        if not isinstance(item, dict) or 'code' not in item or 'level' not in item:
            raise ValueError('not an analyzer message: %r' % (item,))
        kind, namespace, name = parse_origin(item.get('origin', ''))
        messages.append({
            'code': item['code'],
            'level': item['level'],
            'origin': item.get('origin', ''),
            'kind': kind,
            'namespace': namespace,
            'name': name,
            'message': item.get('message', ''),
            'documentation_url': item.get('documentationUrl', ''),
        })
    return messages


def in_scope(message, namespaces):
    """Whether a message concerns the namespaces asked for (all when none are).

    Kept: objects in one of them, the Namespace objects themselves, and other
    cluster-scoped objects (webhook configurations: they act on every
    namespace) and messages about no object at all, as istioctl's own
    namespace filter keeps them.
    """
    if not namespaces:
        return True
    if message['namespace']:
        return message['namespace'] in namespaces
    if message['kind'] == 'Namespace':
        return message['name'] in namespaces
    return True


def line(message):
    """One message as istioctl prints it: ``Error [IST0101] (VirtualService ns/name) text``."""
    origin = ' (%s)' % message['origin'] if message['origin'] else ''
    return '%s [%s]%s %s' % (message['level'], message['code'], origin, message['message'])


def judge(messages, namespaces, accept, fail_on_warnings):
    """The result of an analysis: the messages in scope, each marked accepted or
    failing, the counts, and the lines that make the task fail."""
    accept = accept or {}
    kept, failing, accepted, warnings = [], [], [], []
    out_of_scope = 0
    for message in messages:
        if not in_scope(message, namespaces):
            out_of_scope += 1
            continue
        message = dict(message)
        reason = accept.get(message['code'])
        message['accepted'] = reason is not None and message['level'] in ('Error', 'Warning')
        message['reason'] = reason if message['accepted'] else ''
        serious = message['level'] == 'Error' or (message['level'] == 'Warning' and fail_on_warnings)
        message['failing'] = serious and not message['accepted']
        if message['failing']:
            failing.append(line(message))
        elif message['accepted']:
            accepted.append('%s (accepted: %s)' % (line(message), reason))
        elif message['level'] == 'Warning':
            warnings.append(line(message))
        kept.append(message)
    counts = dict((level.lower(), len([m for m in kept if m['level'] == level])) for level in LEVELS)
    return {
        'messages': kept,
        'counts': counts,
        'failing': failing,
        'accepted': accepted,
        'warnings_reported': warnings,
        'out_of_scope': out_of_scope,
    }


def summary(verdict, namespaces):
    """Human-readable report lines: what was analysed and what was found."""
    where = ', '.join(namespaces) if namespaces else 'all namespaces'
    counts = verdict['counts']
    head = 'istioctl analyze (%s): %d error(s), %d warning(s), %d info(s)' % (
        where, counts['error'], counts['warning'], counts['info'])
    if not verdict['messages']:
        head = 'istioctl analyze (%s): no issue found' % where
    lines = [head]
    lines += ['FAILING: %s' % text for text in verdict['failing']]
    lines += ['accepted: %s' % text for text in verdict['accepted']]
    lines += ['warning: %s' % text for text in verdict['warnings_reported']]
    lines += ['info: %s' % line(m) for m in verdict['messages'] if m['level'] == 'Info']
    return lines


def failure_message(verdict, namespaces):
    where = ', '.join(namespaces) if namespaces else 'all namespaces'
    errors = len([m for m in verdict['messages'] if m['failing'] and m['level'] == 'Error'])
    warnings = len(verdict['failing']) - errors
    found = []
    if errors:
        found.append('%d error(s)' % errors)
    if warnings:
        found.append('%d warning(s) (fail_on_warnings is set)' % warnings)
    return ('istioctl analyze found %s in %s: %s. Fix the object, or accept the code with a reason '
            '(option accept).' % (' and '.join(found), where, '; '.join(verdict['failing'])))
