# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_helm.converge_release: which Helm failures are tried again, the
pending-install release cleared, the others named, the time bound kept; on
scripted kubernetes.core.helm results and a fake clock. The messages are
Helm's own (recorded from Helm v3.19.5 against the test cluster's API server
killed mid-install). The real outage: tests/cluster/test_faults.py."""

from __future__ import annotations

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils import _helm
from ansible_collections.servicemesh.istio.plugins.module_utils._k8s import transient_api_error

REFUSED = ('Failure when executing Helm command. Exited 1.\n    stdout: \n    stderr: Error: Kubernetes cluster '
           'unreachable: Get "https://127.0.0.1:6443/version": dial tcp 127.0.0.1:6443: connect: connection refused\n')
RESET = ('Failure when executing Helm command. Exited 1.\n    stdout: Release "istio-base" does not exist. Installing it '
         'now.\n    stderr: Error: 14 errors occurred:\n\t* Post "https://127.0.0.1:6443/apis/apiextensions.k8s.io/v1/'
         'customresourcedefinitions?fieldManager=helm": read tcp 127.0.0.1:43948->127.0.0.1:6443: read: connection '
         'reset by peer\n')
PENDING = ('Failure when executing Helm command. Exited 1.\n    stdout: \n    stderr: Error: UPGRADE FAILED: another '
           'operation (install/upgrade/rollback) is in progress\n')
INVALID = ('Failure when executing Helm command. Exited 1.\n    stdout: \n    stderr: Error: INSTALLATION FAILED: '
           'Service "istiod" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535\n')
ARGS = dict(release_name='istio-base', release_namespace='istio-system', release_state='present',
            chart_ref='http://127.0.0.1:8879/charts/base.tgz', binary_path='/usr/bin/helm', kubeconfig=None,
            context=None, release_values={}, retry_timeout=30, clear_pending_install=True)


class Scripted:
    """kubernetes.core.helm and helm_info answering from a script, on a fake clock."""

    def __init__(self, helm, status=None):
        self.helm, self.status, self.calls, self.now, self.said = list(helm), status, [], 0.0, []

    def run_module(self, name, args):
        self.calls.append((name, dict(args)))
        if name == 'kubernetes.core.helm_info':
            return {'changed': False, 'status': self.status} if self.status else {'changed': False}
        if args.get('release_state') == 'absent':
            self.status = None
            return {'changed': True}
        return self.helm.pop(0)

    def sleep(self, seconds):
        self.now += seconds

    def converge(self, args=None, check_mode=False):
        return _helm.converge_release(dict(args or ARGS), self.run_module, self.said.append, check_mode=check_mode,
                                      clock=lambda: self.now, sleep=self.sleep)


def failed(msg):
    return {'failed': True, 'msg': msg}


def test_a_success_is_passed_through_untouched():
    helm = Scripted([{'changed': True, 'status': {'status': 'deployed'}}])
    result = helm.converge(dict(ARGS, name='istio-base'))  # the alias too, as a validator leaves it
    assert result['changed'] and not result.get('failed') and 'warnings' not in result
    assert result['retries'] == [] and result['cleared_pending'] == []
    (name, args), = helm.calls
    # this module's own options never reach kubernetes.core.helm; None values are left out
    assert name == 'kubernetes.core.helm' and 'retry_timeout' not in args and 'clear_pending_install' not in args
    assert 'kubeconfig' not in args and args['release_name'] == 'istio-base' and 'name' not in args


@pytest.mark.parametrize('message', [REFUSED, RESET])
def test_a_transient_error_is_tried_again_and_said(message):
    helm = Scripted([failed(message), failed(message), {'changed': True}])
    result = helm.converge()
    assert not result.get('failed') and result['changed']
    assert len(result['retries']) == 2 and helm.now == pytest.approx(1.0 + 1.5)
    assert all('could not reach the API server for release istio-system/istio-base' in line for line in helm.said)
    assert any('2 tries again' in w for w in result['warnings']), result['warnings']


def test_the_time_bound_is_kept_and_the_failure_says_the_api_server_did_not_answer():
    helm = Scripted([failed(REFUSED)] * 50)
    result = helm.converge(dict(ARGS, retry_timeout=12))
    assert result['failed']
    assert result['msg'].startswith('The API server did not answer Helm for release istio-system/istio-base for 12 s')
    assert 'connect: connection refused' in result['msg']
    assert helm.now <= 12 and len(helm.calls) < 10


def test_no_retry_when_the_timeout_is_zero():
    helm = Scripted([failed(REFUSED)])
    result = helm.converge(dict(ARGS, retry_timeout=0))
    assert result['failed'] and len(helm.calls) == 1 and result['retries'] == []


def test_an_error_from_an_api_server_that_answered_is_not_tried_again():
    helm = Scripted([failed(INVALID)])
    result = helm.converge()
    assert result['failed'] and result['msg'] == INVALID and len(helm.calls) == 1


def test_a_pending_install_is_uninstalled_and_installed_again():
    status = {'status': 'pending-install', 'revision': '1', 'updated': '2026-11-30 23:40:01 +0000 UTC'}
    helm = Scripted([failed(PENDING), {'changed': True}], status=status)
    result = helm.converge()
    assert not result.get('failed')
    names = [(name, args.get('release_state')) for name, args in helm.calls]
    assert names == [('kubernetes.core.helm', 'present'), ('kubernetes.core.helm_info', ['all']),
                     ('kubernetes.core.helm', 'absent'), ('kubernetes.core.helm', 'present')]
    assert result['cleared_pending'] and 'was pending-install (revision 1' in result['cleared_pending'][0]
    assert any('uninstalling it to install it again' in line for line in helm.said)


def test_an_outage_during_the_install_then_its_pending_release_both_handled():
    status = {'status': 'pending-install', 'revision': '1', 'updated': 'now'}
    helm = Scripted([failed(RESET), failed(REFUSED), failed(PENDING), {'changed': True}], status=status)
    result = helm.converge()
    assert not result.get('failed') and len(result['retries']) == 2 and len(result['cleared_pending']) == 1


@pytest.mark.parametrize('state', ['pending-upgrade', 'pending-rollback'])
def test_a_release_with_a_deployed_revision_behind_it_is_named_not_rolled_back(state):
    helm = Scripted([failed(PENDING)], status={'status': state, 'revision': '4', 'updated': 'then'})
    result = helm.converge()
    assert result['failed']
    assert 'Helm release istio-system/istio-base is %s (revision 4, last changed then)' % state in result['msg']
    assert '`helm rollback istio-base <the last deployed revision> -n istio-system`' in result['msg']
    assert not any(args.get('release_state') == 'absent' for _name, args in helm.calls)


def test_check_mode_and_the_switch_off_report_a_pending_install_without_removing_it():
    status = {'status': 'pending-install', 'revision': '1', 'updated': 'then'}
    for args, check_mode in ((ARGS, True), (dict(ARGS, clear_pending_install=False), False)):
        helm = Scripted([failed(PENDING)], status=dict(status))
        result = helm.converge(args, check_mode=check_mode)
        assert result['failed'] and 'is pending-install (revision 1' in result['msg'], result
        assert not any(a.get('release_state') == 'absent' for _n, a in helm.calls)


def test_transient_lines_are_found_and_others_are_not():
    assert transient_api_error(RESET).startswith('Post "https://127.0.0.1:6443/apis/apiextensions')
    assert 'connection refused' in transient_api_error(REFUSED)
    assert transient_api_error(INVALID) == '' and transient_api_error(PENDING) == ''
    assert transient_api_error('Error: etcdserver: request timed out')
    # the kubernetes Python client, as kubernetes.core.k8s reports it
    assert transient_api_error("Failed to create object: ('Connection aborted.', RemoteDisconnected('Remote end closed "
                               "connection without response'))")
    assert transient_api_error("Failed to get client due to HTTPSConnectionPool(host='127.0.0.1', port=6443): Max "
                               "retries exceeded with url: /version (Caused by NewConnectionError('<urllib3.connection."
                               "HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] "
                               "Connection refused'))")
    assert not transient_api_error('Failed to create object: b\'{"kind":"Status","message":"namespaces \\"x\\" not '
                                   'found","reason":"NotFound","code":404}\'')
