# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_run_lock: taking, waiting for, taking over and giving back the run lock,
on an in-memory store with the API server's optimistic concurrency
(resourceVersion) and a fake clock. The real Lease, the renewal and the give
back when ansible-playbook ends: tests/cluster/test_run_lock.py."""

from __future__ import annotations

import copy
import datetime
import os
import subprocess
import sys

from ansible_collections.servicemesh.istio.plugins.module_utils import _run_lock

NAME, NS = 'servicemesh-istio-run', 'kube-system'
T0 = datetime.datetime(2026, 11, 30, 10, 0, 0, tzinfo=datetime.timezone.utc)


class Store:
    """Leases in memory; a write with a stale resourceVersion is a Conflict."""

    def __init__(self, racer=None):
        self.leases, self.version, self.racer, self.writes = {}, 0, racer, []

    def read(self, name, namespace):
        lease = self.leases.get((name, namespace))
        return copy.deepcopy(lease) if lease else None

    def _put(self, name, namespace, body):
        self.version += 1
        body = copy.deepcopy(body)
        body['metadata']['resourceVersion'] = str(self.version)
        self.leases[(name, namespace)] = body
        self.writes.append(body['spec']['holderIdentity'])

    def create(self, namespace, body):
        if self.racer:
            racer, self.racer = self.racer, None
            racer(self)
        if (body['metadata']['name'], namespace) in self.leases:
            raise _run_lock.Conflict()
        self._put(body['metadata']['name'], namespace, body)

    def replace(self, name, namespace, body):
        current = self.leases.get((name, namespace))
        if current is None or current['metadata']['resourceVersion'] != body['metadata'].get('resourceVersion'):
            raise _run_lock.Conflict()
        self._put(name, namespace, body)

    def delete(self, name, namespace, resource_version):
        current = self.leases.get((name, namespace))
        if current is None:
            return
        if current['metadata']['resourceVersion'] != resource_version:
            raise _run_lock.Conflict()
        del self.leases[(name, namespace)]


class Clock:
    def __init__(self):
        self.t = 0.0

    def monotonic(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds

    def now(self):
        return T0 + datetime.timedelta(seconds=self.t)


def held_by(store, holder, renewed_ago, duration=120, clock=None):
    now = (clock.now() if clock else T0) - datetime.timedelta(seconds=renewed_ago)
    body = _run_lock.lease_body(NAME, NS, holder, 'AWX job 41 (site.yml)', duration, now)
    store.create(NS, body)


def take(store, clock, run_id='me', wait=0, check_mode=False):
    return _run_lock.acquire(store, NAME, NS, run_id, 'ansible-playbook (site.yml)', 120, wait, check_mode=check_mode,
                             clock=clock.monotonic, sleep=clock.sleep, now=clock.now)


def test_a_free_lock_is_taken_with_who_holds_it():
    store, clock = Store(), Clock()
    result = take(store, clock)
    assert result['changed'] and result['state'] == 'free' and not result.get('failed')
    lease = store.read(NAME, NS)
    assert lease['spec']['holderIdentity'] == 'me' and lease['spec']['leaseDurationSeconds'] == 120
    assert lease['metadata']['annotations']['servicemesh.istio/run'] == 'ansible-playbook (site.yml)'
    assert lease['metadata']['labels']['app.kubernetes.io/managed-by'] == 'servicemesh.istio'


def test_another_runs_lock_is_refused_at_once_naming_it_and_writes_nothing():
    store, clock = Store(), Clock()
    held_by(store, 'them', renewed_ago=30)
    result = take(store, clock)
    assert result['failed'] and result['state'] == 'held' and not result['changed']
    assert 'AWX job 41 (site.yml)' in result['msg'] and 'last renewed 30 s ago' in result['msg']
    assert 'expires in 90 s' in result['msg'] and 'preflight_lock_wait' in result['msg']
    assert 'Nothing was changed' in result['msg']
    assert store.writes == ['them']
    assert clock.t == 0


def test_check_mode_is_refused_the_same_way_and_takes_a_free_lock_not():
    store, clock = Store(), Clock()
    assert take(store, clock, check_mode=True)['state'] == 'free'
    assert store.read(NAME, NS) is None
    held_by(store, 'them', renewed_ago=5)
    assert take(store, clock, check_mode=True)['failed']


def test_waiting_ends_when_the_other_run_gives_the_lock_back():
    store, clock = Store(), Clock()
    held_by(store, 'them', renewed_ago=0)
    original_sleep = clock.sleep

    def sleep(seconds):
        original_sleep(seconds)
        if clock.t >= 20 and store.read(NAME, NS)['spec']['holderIdentity'] == 'them':
            _run_lock.release(store, NAME, NS, 'them')

    clock.sleep = sleep
    result = take(store, clock, wait=300)
    assert not result.get('failed') and result['state'] == 'free' and 20 <= result['waited'] < 30
    assert store.read(NAME, NS)['spec']['holderIdentity'] == 'me'


def test_waiting_too_long_fails_with_the_time_waited():
    store, clock = Store(), Clock()
    held_by(store, 'them', renewed_ago=0, duration=3600)
    result = take(store, clock, wait=30)
    assert result['failed'] and result['waited'] >= 30


def test_an_abandoned_lock_is_taken_over_with_a_warning_naming_its_run():
    store, clock = Store(), Clock()
    held_by(store, 'them', renewed_ago=500)
    result = take(store, clock)
    assert not result.get('failed') and result['state'] == 'expired'
    assert result['holder']['holder'] == 'them'
    assert any('stopped renewing' in w and 'AWX job 41' in w for w in result['warnings'])
    assert store.read(NAME, NS)['spec']['holderIdentity'] == 'me'


def test_a_run_that_writes_first_wins_the_race():
    """Both saw the Lease free; the other run creates it between our read and
    our create: the API server's conflict sends us back to read, and we find
    it held."""
    clock = Clock()
    store = Store(racer=lambda s: held_by(s, 'them', renewed_ago=0, clock=clock))
    result = take(store, clock)
    assert result['failed'] and result['state'] == 'held'
    assert store.read(NAME, NS)['spec']['holderIdentity'] == 'them'


def test_taking_it_again_in_the_same_run_keeps_the_acquire_time_and_reports_no_change():
    store, clock = Store(), Clock()
    take(store, clock)
    acquired = store.read(NAME, NS)['spec']['acquireTime']
    clock.t += 60
    again = take(store, clock)
    assert again['state'] == 'mine' and not again['changed']
    lease = store.read(NAME, NS)
    assert lease['spec']['acquireTime'] == acquired and lease['spec']['renewTime'] != acquired


def test_giving_back_removes_only_this_runs_lock():
    store, clock = Store(), Clock()
    held_by(store, 'them', renewed_ago=0)
    kept = _run_lock.release(store, NAME, NS, 'me')
    assert not kept['changed'] and kept['state'] == 'not mine' and 'left alone' in kept['warnings'][0]
    assert store.read(NAME, NS) is not None
    store.leases.clear()
    take(store, clock)
    gone = _run_lock.release(store, NAME, NS, 'me')
    assert gone['changed'] and store.read(NAME, NS) is None
    assert _run_lock.release(store, NAME, NS, 'me') == {'changed': False, 'state': 'free', 'warnings': []}


def test_renewal_moves_the_renew_time_and_stops_when_the_lock_is_not_ours():
    store, clock = Store(), Clock()
    take(store, clock)
    clock.t += 40
    assert _run_lock.renew(store, NAME, NS, 'me', now=clock.now)
    renewed = _run_lock._timestamp(store.read(NAME, NS)['spec']['renewTime'])
    assert renewed == clock.now()
    store.leases.clear()
    held_by(store, 'them', renewed_ago=0)
    assert not _run_lock.renew(store, NAME, NS, 'me', now=clock.now)


def test_the_playbook_process_is_found_above_a_child_and_its_end_is_seen(tmp_path):
    """A process whose command line is ansible-playbook, with a child: from the
    child, playbook_pid() finds it; wait_for_exit sees it end."""
    script = tmp_path / 'ansible-playbook'
    script.write_text('import subprocess, sys\n'
                      'child = subprocess.Popen([sys.executable, "-c", "import sys, time; '
                      'sys.path.insert(0, %r); ' % os.path.dirname(os.path.dirname(_run_lock.__file__)) +
                      'from module_utils import _run_lock; print(_run_lock.playbook_pid(), flush=True); '
                      'time.sleep(30)"], stdout=sys.stdout)\n'
                      'child.wait()\n')
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == str(proc.pid)
        assert not _run_lock.wait_for_exit(proc.pid, 0.5)
    finally:
        proc.kill()
        proc.wait()
    assert _run_lock.wait_for_exit(proc.pid, 2)


def test_connection_options_without_a_client_fail_with_their_message_once():
    """The client is built once per call (the renewer builds its own after the
    fork); when the options give none, their message is the answer."""
    built = []

    class NoClient(Exception):
        pass

    def make_store():
        built.append(1)
        raise NoClient('kubeconfig /nowhere does not exist')

    params = dict(state='present', run_id='me', description='d', name=NAME, namespace=NS, duration=120, wait=0,
                  keep_until_exit=False)
    result = _run_lock.run_lock(params, False, make_store, config_errors=(NoClient,))
    assert result == dict(failed=True, changed=False, msg='kubeconfig /nowhere does not exist')
    assert built == [1]
