# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by servicemesh.istio's own plugins.
"""A Helm release converged through kubernetes.core.helm, riding out what an
API outage does to Helm.

Two things go wrong when the API server stops answering while Helm works:
Helm fails at once on the connection error (kubernetes.core.helm does not
retry), and an install or upgrade that was under way stays recorded as
``pending-install`` or ``pending-upgrade``, after which Helm refuses every
other operation on the release ("another operation (install/upgrade/rollback)
is in progress") until someone resolves it. ``converge_release`` retries the
first for a bounded time, saying so, and resolves the second where that is
safe: a ``pending-install`` release never had a deployed revision, so it is
uninstalled and installed again; a ``pending-upgrade`` or ``pending-rollback``
one has a deployed revision behind it and is named with the commands to
resolve it, never rolled back behind the user's back.
"""

from __future__ import annotations

import time

from ansible_collections.servicemesh.istio.plugins.module_utils._k8s import transient_api_error

PENDING_OPERATION = 'another operation (install/upgrade/rollback) is in progress'

HELM_RELEASE_SPEC = dict(
    release_name=dict(type='str', required=True, aliases=['name']),
    release_namespace=dict(type='str', required=True, aliases=['namespace']),
    release_state=dict(type='str', default='present', choices=['present', 'absent'], aliases=['state']),
    chart_ref=dict(type='path'),
    chart_repo_url=dict(type='str'),
    chart_version=dict(type='str'),
    release_values=dict(type='dict', default={}, aliases=['values']),
    create_namespace=dict(type='bool', default=False),
    wait=dict(type='bool', default=False),
    binary_path=dict(type='path'),
    kubeconfig=dict(type='raw', aliases=['kubeconfig_path'], no_log=True),
    context=dict(type='str', aliases=['kube_context']),
    retry_timeout=dict(type='int', default=120),
    clear_pending_install=dict(type='bool', default=True),
)

# This module's own options; every other one goes to kubernetes.core.helm as given.
OWN_OPTIONS = ('retry_timeout', 'clear_pending_install')
_CONNECTION = ('binary_path', 'kubeconfig', 'context')


def failure_text(result):
    """Everything a failed kubernetes.core.helm result says: its message and Helm's stderr."""
    return '\n'.join(str(result.get(key) or '') for key in ('msg', 'stderr', 'module_stderr'))


def _release_args(args, **extra):
    out = {key: args[key] for key in _CONNECTION if args.get(key) is not None}
    out.update(release_name=args['release_name'], release_namespace=args['release_namespace'], **extra)
    return out


def pending_message(release, status):
    """What a release left pending-upgrade or pending-rollback needs from the user."""
    name, namespace = release.split('/', 1)[1], release.split('/', 1)[0]
    return (
        'Helm release %s is %s (revision %s, last changed %s): a Helm operation on it did not finish (an interrupted '
        'run, or the API server went away during it), and Helm refuses any other until it is resolved. It has a '
        'deployed revision before it, so it is not undone automatically: see `helm history %s -n %s`, then '
        '`helm rollback %s <the last deployed revision> -n %s`, and run again.'
        % (release, status.get('status'), status.get('revision', '?'), status.get('updated', '?'), name, namespace,
           name, namespace))


def converge_release(args, run_module, progress, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Run kubernetes.core.helm with ``args`` (this module's options included)
    through ``run_module(name, args) -> result``, retrying transient API errors
    until ``retry_timeout`` seconds have passed and clearing a release an
    interrupted install left ``pending-install``. Returns kubernetes.core.helm's
    last result, with ``retries`` and ``cleared_pending`` (what was done, also
    given as warnings so that the run's output says so) and, when the API server
    never came back, a message that says that first."""
    # The options by their own names only (a validator also keeps the aliases a task used).
    helm_args = {key: args[key] for key in HELM_RELEASE_SPEC
                 if key not in OWN_OPTIONS and args.get(key) is not None}
    helm_args['release_state'] = args.get('release_state') or 'present'
    release = '%s/%s' % (args['release_namespace'], args['release_name'])
    timeout = max(0, int(args.get('retry_timeout') or 0))
    deadline = clock() + timeout
    retries, cleared, delay = [], [], 1.0
    while True:
        result = run_module('kubernetes.core.helm', helm_args)
        if not result.get('failed'):
            break
        text = failure_text(result)
        if PENDING_OPERATION in text:
            info = run_module('kubernetes.core.helm_info', _release_args(args, release_state=['all']))
            status = info.get('status') or {}
            state = str(status.get('status', '')).lower()
            if state == 'pending-install' and args.get('clear_pending_install', True) and not check_mode:
                progress('Helm release %s is pending-install (revision %s, last changed %s): an install that never '
                         'finished (an interrupted run, or the API server went away during it); uninstalling it to '
                         'install it again' % (release, status.get('revision', '?'), status.get('updated', '?')))
                removed = run_module('kubernetes.core.helm', _release_args(args, release_state='absent', wait=True))
                if not removed.get('failed'):
                    cleared.append('Helm release %s was pending-install (revision %s, last changed %s), left by an '
                                   'install that never finished: uninstalled and installed again'
                                   % (release, status.get('revision', '?'), status.get('updated', '?')))
                    continue
                result, text = removed, failure_text(removed)
            elif state.startswith('pending-'):
                result = dict(result, msg=pending_message(release, status))
                break
            elif state == 'pending-install':
                result = dict(result, msg=(
                    'Helm release %s is pending-install (revision %s, last changed %s): an install that never '
                    'finished. A run that is not in check mode uninstalls it and installs it again%s.'
                    % (release, status.get('revision', '?'), status.get('updated', '?'),
                       '' if args.get('clear_pending_install', True) else ' when clear_pending_install is true')))
                break
            elif not info.get('failed'):
                # No longer pending (the operation finished after all): simply try again.
                if clock() < deadline:
                    continue
        line = transient_api_error(text)
        if not line:
            break
        left = deadline - clock()
        if left <= 0:
            result = dict(result, msg=(
                'The API server did not answer Helm for release %s for %d s (%s). Check that the cluster is up '
                '(kubectl get --raw /readyz) and run again; a run interrupted this way converges when run again. '
                'What Helm said: %s' % (release, timeout, line, result.get('msg', ''))))
            break
        pause = min(delay, left)
        retries.append('Helm could not reach the API server for release %s (%s): tried again after %.1f s'
                       % (release, line, pause))
        progress('Helm could not reach the API server for release %s (%s); trying again in %.1f s, for %d s more at '
                 'most' % (release, line, pause, left))
        sleep(pause)
        delay = min(delay * 1.5, 10.0)
    result = dict(result, retries=retries, cleared_pending=cleared)
    if retries or cleared:
        result['warnings'] = list(result.get('warnings') or []) + cleared + (
            ['%s: %d tries again, the last %s' % (release, len(retries), retries[-1].split(': tried again')[0])]
            if retries else [])
    return result
