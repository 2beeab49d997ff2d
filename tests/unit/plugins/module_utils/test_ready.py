# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ready: judging Kubernetes objects, the wait loop and the preflight reader,
on API objects built here and a fake reader with a fake clock (the same code
runs against the real API server in tests/cluster/test_ready_modules.py)."""

from __future__ import annotations

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _ready
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC


def deployment(replicas=1, updated=1, ready=1, available=1, total=None, generation=2, observed=2, progressing=None):
    status = dict(updatedReplicas=updated, readyReplicas=ready, availableReplicas=available,
                  replicas=updated if total is None else total, observedGeneration=observed)
    if progressing:
        status['conditions'] = [dict(type='Progressing', status='False', reason=progressing, message='too slow')]
    return dict(metadata=dict(name='web', namespace='ns', generation=generation), spec=dict(replicas=replicas),
                status=status)


@pytest.mark.parametrize('obj, ready, words', [
    (deployment(), True, '1/1 updated, 1/1 ready, 1/1 available'),
    (deployment(observed=1), False, 'not yet observed'),
    (deployment(updated=0, ready=0, available=0), False, '0/1 updated'),
    (deployment(replicas=2, updated=2, total=3), False, '1 old replica(s) still terminating'),
    (deployment(replicas=2, updated=2, ready=1, available=1), False, '1/2 ready'),
    (deployment(updated=0, ready=0, available=0, progressing='ProgressDeadlineExceeded'), False, 'too slow'),
    (deployment(replicas=0, updated=0, ready=0, available=0), True, '0/0'),
])
def test_deployment_state(obj, ready, words):
    state, detail = _ready.deployment_state(obj)
    assert state is ready and words in detail, detail


def daemonset(desired=2, updated=2, ready=2, available=2, generation=1, observed=1):
    return dict(metadata=dict(generation=generation), status=dict(
        desiredNumberScheduled=desired, updatedNumberScheduled=updated, numberReady=ready,
        numberAvailable=available, observedGeneration=observed))


@pytest.mark.parametrize('obj, ready, words', [
    (daemonset(), True, '2/2 nodes updated'),
    (daemonset(updated=1), False, '1/2 nodes updated'),
    (daemonset(ready=1, available=1), False, '1/2 ready'),
    (daemonset(generation=2), False, 'not yet observed'),
    (daemonset(0, 0, 0, 0), True, 'no node to schedule on'),
    (dict(metadata={}, status={}), False, 'no status yet'),
])
def test_daemonset_state(obj, ready, words):
    state, detail = _ready.daemonset_state(obj)
    assert state is ready and words in detail, detail


def test_crd_service_webhook_namespace_states():
    established = dict(status=dict(conditions=[dict(type='Established', status='True')]))
    clash = dict(status=dict(conditions=[dict(type='NamesAccepted', status='False', message='plural in use')]))
    assert _ready.crd_state(established) == (True, 'Established')
    assert _ready.crd_state(clash) == (False, 'names not accepted: plural in use')
    assert _ready.crd_state({})[0] is False

    lb = dict(spec=dict(type='LoadBalancer', clusterIP='10.0.0.9'))
    assert _ready.service_state(lb) == (False, 'LoadBalancer without an external address yet')
    assert _ready.service_state(lb, require_address=False)[0] is True
    lb['status'] = dict(loadBalancer=dict(ingress=[dict(ip='203.0.113.7'), dict(hostname='lb.example')]))
    assert _ready.service_state(lb) == (True, 'LoadBalancer at 203.0.113.7, lb.example')
    assert _ready.service_state(dict(spec=dict(type='NodePort', clusterIP='10.0.0.3')))[0] is True

    hook = dict(webhooks=[dict(name='a', clientConfig={}), dict(name='b', clientConfig=dict(caBundle='Zm9v'))])
    assert _ready.webhook_state(hook)[0] is True
    assert _ready.webhook_state(hook, require_ca_bundle=True) == (False, 'no caBundle yet in a')
    assert _ready.object_state('Namespace', dict(status=dict(phase='Terminating'))) == (False, 'Terminating')
    with pytest.raises(ValueError):
        _ready.object_state('Pod', {})


@pytest.mark.parametrize("obj,ready,detail", [
    (dict(metadata=dict(generation=2), status=dict(conditions=[
        dict(type='Ready', status='True', reason='ACMEAccountRegistered', message='The ACME account was registered',
             observedGeneration=2)])), True, 'Ready (The ACME account was registered)'),
    (dict(metadata=dict(generation=3), status=dict(conditions=[
        dict(type='Ready', status='True', observedGeneration=2)])), False, 'Ready is for generation 2, the object is at 3'),
    (dict(status=dict(conditions=[dict(type='Ready', status='False', reason='ErrRegisterACMEAccount',
                                       message='connection refused')])), False, 'Ready=False (connection refused)'),
    (dict(status={}), False, 'no Ready condition yet'),
])
def test_issuer_ready_condition(obj, ready, detail):
    """cert-manager's ClusterIssuer and Issuer: Ready=True for the current generation."""
    for kind in ('ClusterIssuer', 'Issuer'):
        assert _ready.object_state(kind, obj) == (ready, detail)
    assert _ready.KINDS['ClusterIssuer'][2] is False and _ready.KINDS['Issuer'][2] is True


def pod(name, containers=('app',), native=(), ready=True, terminating=False, waiting=None, owner='web-5d8f7', hash_='5d8f7'):
    spec = dict(containers=[dict(name=c) for c in containers], nodeName='n1',
                initContainers=[dict(name=c, restartPolicy='Always') for c in native] + [dict(name='istio-init')])
    statuses = [dict(name=c, ready=ready) for c in containers]
    if waiting:
        statuses[0]['state'] = dict(waiting=dict(reason=waiting))
    meta = dict(name=name, namespace='ns', labels={'pod-template-hash': hash_},
                ownerReferences=[dict(kind='ReplicaSet', name=owner, controller=True)])
    if terminating:
        meta['deletionTimestamp'] = '2026-11-27T00:00:00Z'
    return dict(metadata=meta, spec=spec, status=dict(
        phase='Running', containerStatuses=statuses,
        initContainerStatuses=[dict(name=c, ready=ready) for c in native] + [dict(name='istio-init', ready=False)],
        conditions=[dict(type='Ready', status='True' if ready else 'False')]))


def test_pod_summary_counts_native_sidecars_and_finds_the_deployment():
    summary = _ready.pod_summary(pod('web-5d8f7-abcde', native=('istio-proxy',)))
    assert summary['controller'] == 'web'
    assert summary['containers'] == ['app', 'istio-proxy'] and summary['native_sidecars'] == ['istio-proxy']
    assert summary['ready_containers'] == 2 and summary['ready'] and not summary['terminating']
    assert _ready.pod_summary(pod('x', owner='job-a', hash_='zz'))['controller'] == 'job-a'


def test_pods_state_names_each_problem_and_ignores_terminating_pods():
    pods = [_ready.pod_summary(p) for p in (
        pod('good', containers=('app', 'istio-proxy')),
        pod('bare'),
        pod('crash', containers=('app', 'istio-proxy'), ready=False, waiting='CrashLoopBackOff'),
        pod('old', terminating=True),
    )]
    ok, detail, problems = _ready.pods_state(pods, containers=['istio-proxy'])
    assert not ok and detail == '1/3 pods ok'
    assert problems == ['pod bare: no istio-proxy container',
                        'pod crash: not Ready (0/2 containers ready, phase Running; app: CrashLoopBackOff)']
    ok, dummy, problems = _ready.pods_state(pods[:1], absent_containers=['istio-proxy'])
    assert not ok and problems == ['pod good: has istio-proxy']
    assert _ready.pods_state([], min_pods=2)[2] == ['0 pod(s), at least 2 expected']
    assert _ready.pods_state([], min_pods=0)[0] is True


def _run_once_pod(name, phase, client_state, proxy=True):
    """A client pod (restartPolicy Never) whose container "client" is in client_state."""
    state = {'reason': 'Completed'} if client_state == 'terminated' else {}
    statuses = [dict(name='client', ready=False, state={client_state: state})]
    containers = [dict(name='client')]
    if proxy:
        containers.append(dict(name='istio-proxy'))
        statuses.append(dict(name='istio-proxy', ready=True, state={'running': {}}))
    return dict(metadata=dict(name=name, namespace='ns'), spec=dict(containers=containers),
                status=dict(phase=phase, containerStatuses=statuses,
                            conditions=[dict(type='Ready', status='False')]))


def test_terminated_containers_wait_for_the_client_not_for_readiness():
    done_with_sidecar = _ready.pod_summary(_run_once_pod('a', 'Running', 'terminated'))
    still_running = _ready.pod_summary(_run_once_pod('b', 'Running', 'running'))
    ended_by_deadline = _ready.pod_summary(_run_once_pod('c', 'Failed', 'running', proxy=False))
    assert done_with_sidecar['terminated'] == ['client'] and still_running['terminated'] == []
    # The client has exited while its sidecar runs on: finished, though never Ready.
    ok, detail, problems = _ready.pods_state([done_with_sidecar, ended_by_deadline], terminated_containers=['client'])
    assert ok and detail == '2/2 pods finished' and problems == []
    ok, detail, problems = _ready.pods_state([done_with_sidecar, still_running], terminated_containers=['client'],
                                             min_pods=2)
    assert not ok and detail == '1/2 pods finished'
    assert problems == ['pod b: client not terminated (phase Running)']
    # Without terminated_containers the same pods are judged on readiness.
    assert not _ready.pods_state([done_with_sidecar])[0]
    assert _ready.pods_state([done_with_sidecar], terminated_containers=['client'], min_pods=2)[2] == [
        '1 pod(s), at least 2 expected']


def test_events_are_latest_first_filtered_by_name():
    events = [dict(involvedObject=dict(kind='Pod', name='web-1'), reason='Pulled', message='ok',
                   lastTimestamp='2026-11-27T10:00:02Z'),
              dict(involvedObject=dict(kind='Pod', name='db-1'), reason='Failed', message='no',
                   lastTimestamp='2026-11-27T10:00:03Z'),
              dict(involvedObject=dict(kind='Pod', name='web-2'), reason='BackOff', message=' again ',
                   eventTime='2026-11-27T10:00:01Z')]
    assert _ready.describe_events(events, limit=8, names=['web']) == [
        '[Pod/web-2] BackOff: again', '[Pod/web-1] Pulled: ok']
    assert _ready.describe_events(events, limit=1) == ['[Pod/db-1] Failed: no']


@pytest.mark.parametrize('text, expected', [('v1.34.4', '1.34.4'), ('v1.31.2-eks.1+abc', '1.31.2'),
                                            ('3.19.5+g1234', '3.19.5'), ('devel', None), ('', None)])
def test_plain_version(text, expected):
    assert _ready.plain_version(text) == expected


def test_node_summary():
    node = dict(metadata=dict(name='w1'), spec=dict(unschedulable=True), status=dict(
        conditions=[dict(type='Ready', status='False', reason='KubeletNotReady')],
        addresses=[dict(type='Hostname', address='w1'), dict(type='InternalIP', address='10.1.0.5')],
        nodeInfo=dict(kubeletVersion='v1.34.4')))
    assert _ready.node_summary(node) == dict(name='w1', ready=False, reason='KubeletNotReady', internal_ip='10.1.0.5',
                                             kubelet_version='v1.34.4', unschedulable=True)


def test_chart_index_summary_sorts_versions_and_finds_the_url():
    index = dict(entries=dict(base=[dict(version=v, urls=['base-%s.tgz' % v])
                                    for v in ('1.9.0', '1.30.4', '1.10.0', '1.30.4-beta.1')]))
    summary = _ready.chart_index_summary(index, ['base', 'istiod'], '1.30.4')
    assert summary['base']['found'] and summary['base']['url'] == 'base-1.30.4.tgz'
    assert summary['base']['latest'][0] == '1.9.0' and summary['base']['latest'][-1] == '1.30.4'
    assert summary['istiod'] == dict(found=False, url='', versions=0, latest=[])


# ---------------------------------------------------------------------------
# The wait loop, on a fake reader and a fake clock
# ---------------------------------------------------------------------------

class FakeReader:
    """Serves one object per (kind, namespace, name), changed by a script of reads."""

    def __init__(self, script):
        self.script = script  # list of {key: obj or None}, one per attempt; the last one repeats
        self.reads = 0
        self.events = []

    def _state(self):
        return self.script[min(self.reads, len(self.script) - 1)]

    def get(self, kind, name, namespace=None):
        return self._state().get((kind, namespace, name))

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        del label_selector, field_selector
        if kind == 'Event':
            return self.events
        return [o for (k, ns, dummy), o in self._state().items() if k == kind and ns == namespace and o]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def params(**kwargs):
    out = dict(resources=[], pods=[], events=8, progress_interval=10)
    out.update({k: v['default'] for k, v in WAIT_ARGUMENT_SPEC.items()})
    out.update(kwargs)
    for res in out['resources']:
        for key, spec in _ready.RESOURCE_SPEC.items():
            res.setdefault(key, spec.get('default'))
    return out


def run_waiter(script, reader_class=FakeReader, **kwargs):
    reader = reader_class(script)
    clock = Clock()
    lines = []

    def check_and_count(remaining):
        result = original(remaining)
        reader.reads += 1
        return result

    waiter = _ready.ReadyWaiter(params(**kwargs), reader, lines.append, clock=clock, sleep=clock.sleep)
    original = waiter.check
    waiter.check = check_and_count
    return waiter.run(), lines, reader


KEY = ('Deployment', 'ns', 'web')


def test_wait_succeeds_once_the_rollout_is_done():
    script = [{KEY: deployment(updated=0, ready=0, available=0)}, {KEY: deployment(updated=1, ready=0, available=0)},
              {KEY: deployment()}]
    result, lines, dummy = run_waiter(script, resources=[dict(kind='Deployment', name='web', namespace='ns')])
    assert 'failed' not in result and result['attempts'] == 3 and result['pending'] == []
    assert result['resources'][0]['ready'] and lines == []


def test_wait_times_out_with_what_is_pending_events_and_progress_lines():
    reader_script = [{KEY: deployment(updated=0, ready=0, available=0)}]
    result, lines, reader = run_waiter(reader_script, resources=[dict(kind='Deployment', name='web', namespace='ns'),
                                                                 dict(kind='Namespace', name='gone')],
                                       timeout=35, progress_interval=10)
    assert result['failed'] and result['msg'].startswith('Timed out after 35 s')
    assert 'Deployment ns/web: spec change' not in result['msg']
    assert 'Deployment ns/web: 0/1 updated' in result['msg'] and 'Namespace gone: does not exist' in result['msg']
    assert 'No events recorded.' in result['msg']
    assert len(lines) == 3 and lines[0].startswith('waiting 1') and '2 item(s)' in lines[0], lines
    assert reader.reads > 3


def test_wait_quotes_the_events_of_the_objects_waited_for():
    class WithEvents(FakeReader):
        def __init__(self, script):
            super().__init__(script)
            self.events = [dict(involvedObject=dict(kind='Pod', name='web-1'), reason='FailedScheduling',
                                message='0/2 nodes are available', lastTimestamp='2026-11-27T10:00:00Z'),
                           dict(involvedObject=dict(kind='Pod', name='other'), reason='Pulled', message='x',
                                lastTimestamp='2026-11-27T10:00:01Z')]
    result, dummy, dummy = run_waiter([{}], reader_class=WithEvents, timeout=0,
                                      resources=[dict(kind='Deployment', name='web', namespace='ns')])
    assert result['events'] == ['ns: [Pod/web-1] FailedScheduling: 0/2 nodes are available']
    assert result['attempts'] == 1


def test_label_selected_resources_need_min_count():
    result, dummy, dummy = run_waiter([{KEY: deployment()}], timeout=0, resources=[
        dict(kind='Deployment', namespace='ns', label_selectors=['app=web'], min_count=2)])
    assert result['failed'] and 'Deployment ns/(app=web): 1 found, at least 2 expected' in result['msg']


def test_input_errors():
    bad = params(resources=[dict(kind='Deployment', name='x'), dict(kind='Namespace', name='y', namespace='z')])
    assert _ready.input_errors(bad) == [
        'resources[0]: Deployment is namespaced, give its namespace',
        'resources[1]: Namespace is cluster-scoped, namespace must not be set']
    assert _ready.input_errors(params()) == ['give at least one entry in resources or pods']
    pods = [dict(namespace='ns')]
    assert _ready.input_errors(params(pods=pods, initial_sleep=0, max_sleep=1, backoff_factor=0.5)) == [
        'initial_sleep must be positive', 'backoff_factor (0.5) must be at least 1']
    assert _ready.input_errors(params(pods=pods, initial_sleep=2, max_sleep=1)) == [
        'max_sleep (1) must not be smaller than initial_sleep (2)']


def test_a_gentle_backoff_polls_densely_first():
    script = [{KEY: deployment(updated=0, ready=0, available=0)}] * 4 + [{KEY: deployment()}]
    result, dummy, dummy = run_waiter(script, resources=[dict(kind='Deployment', name='web', namespace='ns')],
                                      initial_sleep=0.25, backoff_factor=1.25, max_sleep=2)
    assert 'failed' not in result and result['attempts'] == 5
    assert result["elapsed"] == round(0.25 + 0.3125 + 0.390625 + 0.48828125, 2)  # polls at 0, .25, .56, .95, 1.44


def test_gather_preflight_reports_helm_and_repository_problems_without_failing():
    def run_command(argv):
        raise OSError('[Errno 2] No such file or directory: %r' % argv[0])

    def open_url(url, timeout):
        raise OSError('connection refused: %s (%s s)' % (url, timeout))

    result = _ready.gather_preflight(
        dict(nodes=False, dry_run_create=[], helm_binary='helm3', chart_repo='http://127.0.0.1:9/charts/',
             charts=['base'], chart_version='1.30.4', request_timeout=2), None, run_command, open_url)
    assert result['helm']['version'] == '' and 'No such file' in result['helm']['error']
    assert result['chart_repo']['index_url'] == 'http://127.0.0.1:9/charts/index.yaml'
    assert result['chart_repo']['error'].startswith('connection refused')


def test_gather_preflight_resolves_relative_chart_urls_and_reads_helm():
    index = b'apiVersion: v1\nentries:\n  base:\n  - version: 1.30.4\n    urls: [charts/base-1.30.4.tgz]\n'
    result = _ready.gather_preflight(
        dict(nodes=False, dry_run_create=[], helm_binary='helm', chart_repo='http://127.0.0.1:9/r',
             charts=['base'], chart_version='1.30.4', request_timeout=2), None,
        lambda argv: (0, 'v3.19.5+g1234\n', ''), lambda url, timeout: index)
    assert result['helm'] == dict(path='helm', output='v3.19.5+g1234', version='3.19.5', error='')
    assert result['chart_repo']['charts']['base']['url'] == 'http://127.0.0.1:9/r/charts/base-1.30.4.tgz'
    bad = _ready.gather_preflight(
        dict(nodes=False, dry_run_create=[], helm_binary=None, chart_repo='http://127.0.0.1:9/r',
             charts=['base'], chart_version='1', request_timeout=2), None, None, lambda url, timeout: b'<html>')
    assert 'not a Helm repository index' in bad['chart_repo']['error']


# ---------------------------------------------------------------------------
# Messages after an API outage: nothing answered is not "the API server answered"
# ---------------------------------------------------------------------------

def _refused():
    """The exception urllib3 raises when the API server's port is closed, built
    from a real refused connection to a closed loopback port."""
    import socket

    import urllib3

    # As in a real run, where the reader's client imported it: transport_errors()
    # knows urllib3's exceptions once the kubernetes library is loaded.
    assert _k8s.import_kubernetes() is None
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        pool = urllib3.HTTPSConnectionPool('127.0.0.1', port, retries=urllib3.Retry(0, raise_on_redirect=False))
        with pytest.raises(urllib3.exceptions.HTTPError) as caught:
            pool.request('GET', '/api/v1/namespaces/ns/pods', timeout=2)
    return caught.value


class Outage(FakeReader):
    """The API server is down for the attempts the script marks None, then back."""

    def _state(self):
        state = super()._state()
        if state is None:
            raise _refused()
        return state


def test_an_outage_to_the_end_says_nothing_answered_not_that_the_server_answered():
    result, lines, dummy = run_waiter([None], resources=[dict(kind='Deployment', name='web', namespace='ns')],
                                      reader_class=Outage, timeout=12, progress_interval=10, events=0)
    msg = result['msg']
    assert result['failed'] and msg.startswith('Timed out after 12 s'), msg
    assert 'the API server answered' not in msg, msg
    assert 'no answer from the API server at the last attempt (' in msg and 'Connection refused' in msg, msg
    # One line, no urllib3 wrapper text.
    assert 'HTTPSConnectionPool' not in msg and 'Max retries' not in msg and '\n' not in msg, msg
    assert lines and 'Connection refused' in lines[0] and 'HTTPSConnection' not in lines[0], lines


def test_after_an_outage_the_message_is_about_what_the_last_attempt_saw():
    pending = {KEY: deployment(updated=0, ready=0, available=0)}
    result, dummy, dummy2 = run_waiter([None, None, pending], resources=[dict(kind='Deployment', name='web', namespace='ns')],
                                       reader_class=Outage, timeout=20, events=0)
    msg = result['msg']
    assert 'Connection refused' not in msg and 'API server' not in msg, msg
    assert 'not ready: Deployment ns/web: 0/1 updated' in msg, msg


def test_an_outage_then_recovery_succeeds():
    result, dummy, dummy2 = run_waiter([None, None, {KEY: deployment()}], reader_class=Outage,
                                       resources=[dict(kind='Deployment', name='web', namespace='ns')], timeout=20)
    assert 'failed' not in result and result['attempts'] == 3, result


def test_an_http_error_still_says_the_server_answered():
    assert _k8s.import_kubernetes() is None

    class Unavailable(FakeReader):
        def _state(self):
            raise _k8s.ApiException(status=503, reason='Service Unavailable')

    result, dummy, dummy2 = run_waiter([{}], resources=[dict(kind='Deployment', name='web', namespace='ns')],
                                       reader_class=Unavailable, timeout=5, events=0)
    assert 'the API server answered: HTTP 503 Service Unavailable' in result['msg'], result['msg']


def test_transport_error_text_is_the_innermost_reason():
    assert _k8s.transport_error_text(_refused()).endswith('Connection refused')
    assert _k8s.transport_error_text(_refused()).startswith('Failed to establish a new connection')
    assert _k8s.transport_error_text(OSError('[Errno 101] Network is unreachable')) == '[Errno 101] Network is unreachable'
