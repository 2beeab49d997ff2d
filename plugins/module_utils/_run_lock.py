# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time against a cluster: a coordination.k8s.io Lease as the lock.

The logic works on a small store interface (read, create, replace, delete) so
that it can be tested without a cluster; LeaseStore is the real one.
"""

from __future__ import annotations

import datetime
import os
import time

LEASE_ANNOTATION_PREFIX = 'servicemesh.istio/'
PLAYBOOK_NAMES = ('ansible-playbook',)


RUN_LOCK_SPEC = dict(
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    run_id=dict(type='str', required=True),
    description=dict(type='str', default='ansible-playbook'),
    name=dict(type='str', default='servicemesh-istio-run'),
    namespace=dict(type='str', default='kube-system'),
    duration=dict(type='int', default=120),
    wait=dict(type='int', default=0),
    keep_until_exit=dict(type='bool', default=True),
)


class Conflict(Exception):
    """Someone else wrote the Lease between our read and our write."""


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _timestamp(value):
    """A Lease's MicroTime as an aware datetime (the client gives datetimes or strings)."""
    if value is None or isinstance(value, datetime.datetime):
        return value
    text = str(value).replace('Z', '+00:00')
    return datetime.datetime.fromisoformat(text)


def _micro_time(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def lease_state(lease, run_id, now):
    """('free' | 'mine' | 'held' | 'expired', details) for a Lease (a dict, or None)."""
    if not lease:
        return 'free', {}
    spec = lease.get('spec') or {}
    holder = spec.get('holderIdentity') or ''
    if not holder:
        return 'free', {}
    annotations = (lease.get('metadata') or {}).get('annotations') or {}
    renewed = _timestamp(spec.get('renewTime')) or _timestamp(spec.get('acquireTime'))
    duration = int(spec.get('leaseDurationSeconds') or 0)
    age = (now - renewed).total_seconds() if renewed else None
    details = dict(
        holder=holder,
        host=annotations.get(LEASE_ANNOTATION_PREFIX + 'host', ''),
        pid=annotations.get(LEASE_ANNOTATION_PREFIX + 'pid', ''),
        description=annotations.get(LEASE_ANNOTATION_PREFIX + 'run', ''),
        acquired=str(spec.get('acquireTime') or ''),
        renewed_seconds_ago=None if age is None else int(age),
        duration=duration,
        expires_in=None if age is None else int(duration - age),
    )
    if holder == run_id:
        return 'mine', details
    if age is None or age > duration:
        return 'expired', details
    return 'held', details


def describe_holder(details):
    who = details.get('description') or details.get('holder')
    where = []
    if details.get('host'):
        where.append('on %s' % details['host'])
    if details.get('pid'):
        where.append('pid %s' % details['pid'])
    text = '%s%s' % (who, (' (%s)' % ', '.join(where)) if where else '')
    if details.get('renewed_seconds_ago') is not None:
        text += ', last renewed %s s ago, expires in %s s unless renewed' % (
            details['renewed_seconds_ago'], max(0, details.get('expires_in') or 0))
    return text


def lease_body(name, namespace, run_id, description, duration, now, acquired=None, resource_version=None):
    pid = playbook_pid()
    metadata = dict(
        name=name, namespace=namespace,
        labels={'app.kubernetes.io/managed-by': 'servicemesh.istio'},
        annotations={
            LEASE_ANNOTATION_PREFIX + 'run': description,
            LEASE_ANNOTATION_PREFIX + 'host': os.uname()[1],
            LEASE_ANNOTATION_PREFIX + 'pid': str(pid or os.getpid()),
        },
    )
    if resource_version:
        metadata['resourceVersion'] = resource_version
    return dict(
        apiVersion='coordination.k8s.io/v1', kind='Lease', metadata=metadata,
        spec=dict(holderIdentity=run_id, leaseDurationSeconds=int(duration),
                  acquireTime=_micro_time(acquired or now), renewTime=_micro_time(now)),
    )


def acquire(store, name, namespace, run_id, description, duration, wait, check_mode=False,
            clock=time.monotonic, sleep=time.sleep, now=utcnow):
    """Take the lock, waiting up to ``wait`` seconds for another holder.

    Returns a result dict (changed, state, holder details, waited, warnings) or
    one with failed=True and msg naming the holder and what to do.
    """
    start = clock()
    warnings = []
    while True:
        lease = store.read(name, namespace)
        state, details = lease_state(lease, run_id, now())
        if state == 'held':
            waited = clock() - start
            if waited >= wait:
                return dict(
                    failed=True, changed=False, state='held', holder=details, waited=int(waited),
                    msg=('Another run holds the lock Lease %s/%s: %s. Nothing was changed. Wait for it to end and '
                         'run again, or let this run wait for it (preflight_lock_wait, in seconds). If that run is '
                         'gone, the lock frees itself when it expires.' % (
                             namespace, name, describe_holder(details))))
            sleep(min(5.0, max(0.5, wait - waited)))
            continue
        if check_mode:
            if state == 'expired':
                warnings.append('check mode: the lock Lease %s/%s is held by a run that stopped renewing it (%s); '
                                'a real run would take it over' % (namespace, name, describe_holder(details)))
            return dict(changed=state != 'mine', state=state, holder=details, waited=int(clock() - start),
                        warnings=warnings)
        moment = now()
        try:
            if lease is None:
                store.create(namespace, lease_body(name, namespace, run_id, description, duration, moment))
            else:
                acquired = _timestamp((lease.get('spec') or {}).get('acquireTime')) if state == 'mine' else None
                store.replace(name, namespace, lease_body(
                    name, namespace, run_id, description, duration, moment, acquired=acquired,
                    resource_version=lease['metadata'].get('resourceVersion')))
        except Conflict:
            continue  # another run wrote it first: read again
        if state == 'expired':
            warnings.append('took over the lock Lease %s/%s from a run that stopped renewing it: %s' % (
                namespace, name, describe_holder(details)))
        return dict(changed=state != 'mine', state=state, holder=details if state == 'expired' else {},
                    waited=int(clock() - start), warnings=warnings)


def release(store, name, namespace, run_id, check_mode=False):
    """Give the lock back if this run holds it; never touch another run's."""
    lease = store.read(name, namespace)
    holder = ((lease or {}).get('spec') or {}).get('holderIdentity') or ''
    if not lease:
        return dict(changed=False, state='free', warnings=[])
    if holder != run_id:
        return dict(changed=False, state='not mine', warnings=[
            'the lock Lease %s/%s is held by another run (%s), so it was left alone' % (
                namespace, name, describe_holder(lease_state(lease, run_id, utcnow())[1]))] if holder else [])
    if not check_mode:
        try:
            store.delete(name, namespace, lease['metadata'].get('resourceVersion'))
        except Conflict:
            return release(store, name, namespace, run_id, check_mode)
    return dict(changed=True, state='released', warnings=[])


def renew(store, name, namespace, run_id, now=utcnow):
    """Renew the Lease if this run still holds it; False when it does not."""
    lease = store.read(name, namespace)
    spec = (lease or {}).get('spec') or {}
    if spec.get('holderIdentity') != run_id:
        return False
    spec['renewTime'] = _micro_time(now())
    try:
        store.replace(name, namespace, lease)
    except Conflict:
        return renew(store, name, namespace, run_id, now)
    return True


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return [part.decode('utf-8', 'replace') for part in handle.read().split(b'\0') if part]
    except OSError:
        return []


def _parent(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return int(handle.read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def is_playbook(pid):
    return any(os.path.basename(part).startswith(PLAYBOOK_NAMES) for part in _cmdline(pid)[:2])


def playbook_pid(start=None):
    """The topmost ansible-playbook process above this one (its workers are
    forks with the same command line), or None (a remote connection)."""
    pid, found = start or os.getpid(), None
    for _dummy in range(64):
        pid = _parent(pid)
        if pid <= 1:
            break
        if is_playbook(pid):
            found = pid
    return found


def wait_for_exit(pid, timeout):
    """True when process ``pid`` ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_playbook(pid):
            return True
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    return not is_playbook(pid)


def keep_until_exit(make_store, name, namespace, run_id, duration, pid):
    """Fork a daemon that renews the Lease every third of ``duration`` while
    the ansible-playbook process ``pid`` runs, and releases it when that
    process ends (success, failure or kill). Returns in the caller at once."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:  # the first child: a new session, then a grandchild that no one waits for
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        store = make_store()
        interval = max(5.0, duration / 3.0)
        while True:
            if wait_for_exit(pid, interval):
                for _attempt in range(10):
                    try:
                        release(store, name, namespace, run_id)
                        break
                    except Exception:  # pylint: disable=broad-except
                        time.sleep(3)
                break
            try:
                if not renew(store, name, namespace, run_id):
                    break  # released or taken over: nothing more to keep
            except Exception:  # pylint: disable=broad-except
                continue  # the API server may be back at the next renewal
    finally:
        os._exit(0)


class LeaseStore:
    """The store on a real cluster (kubernetes.client.CoordinationV1Api)."""

    def __init__(self, api_client, kubernetes, api_exception):
        self.api = kubernetes.client.CoordinationV1Api(api_client)
        self.client = api_client
        self.api_exception = api_exception

    def _dict(self, obj):
        return self.client.sanitize_for_serialization(obj)

    def read(self, name, namespace):
        try:
            return self._dict(self.api.read_namespaced_lease(name, namespace))
        except self.api_exception as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, namespace, body):
        try:
            self.api.create_namespaced_lease(namespace, body)
        except self.api_exception as exc:
            if exc.status == 409:
                raise Conflict()
            raise

    def replace(self, name, namespace, body):
        try:
            self.api.replace_namespaced_lease(name, namespace, body)
        except self.api_exception as exc:
            if exc.status in (404, 409):
                raise Conflict()
            raise

    def delete(self, name, namespace, resource_version):
        try:
            self.api.delete_namespaced_lease(name, namespace, body={'preconditions': {'resourceVersion': resource_version}})
        except self.api_exception as exc:
            if exc.status == 404:
                return
            if exc.status == 409:
                raise Conflict()
            raise


def run_lock(params, check_mode, make_store, kubernetes_errors=(), error_text=str, transport_text=str,
             config_errors=()):
    """The module's logic (module and action plugin alike): a result dict with
    ``warnings`` and, on failure, ``failed`` and ``msg``. ``config_errors``:
    what ``make_store`` raises when the connection options give no client
    (their message is the whole answer)."""
    if not params['run_id'].strip():
        return dict(failed=True, changed=False, msg="run_id must not be empty: it is the lock holder's identity")
    if params['duration'] < 10:
        return dict(failed=True, changed=False, msg='duration must be at least 10 seconds (got %d)' % params['duration'])
    if params['wait'] < 0:
        return dict(failed=True, changed=False, msg='wait must be 0 or more seconds (got %d)' % params['wait'])
    where = (params['name'], params['namespace'])
    try:
        store = make_store()
    except config_errors as exc:
        return dict(failed=True, changed=False, msg=str(exc))
    try:
        if params['state'] == 'absent':
            result = release(store, *where, run_id=params['run_id'], check_mode=check_mode)
        else:
            result = acquire(store, *where, run_id=params['run_id'], description=params['description'],
                             duration=params['duration'], wait=params['wait'], check_mode=check_mode)
    except kubernetes_errors as exc:
        return dict(failed=True, changed=False, msg='the lock Lease %s/%s could not be read or written: %s' % (
            params['namespace'], params['name'], error_text(exc)))
    except Exception as exc:  # pylint: disable=broad-except
        return dict(failed=True, changed=False, msg='no answer from the API server about the lock Lease %s/%s: %s' % (
            params['namespace'], params['name'], transport_text(exc)))
    result.setdefault('holder', {})
    result.setdefault('warnings', [])
    if params['state'] == 'present' and not result.get('failed'):
        result['kept_until_exit'] = False
        if not check_mode and params['keep_until_exit']:
            pid = playbook_pid()
            if pid:
                keep_until_exit(make_store, *where, run_id=params['run_id'], duration=params['duration'], pid=pid)
                result['kept_until_exit'] = True
            else:
                result['warnings'].append(
                    'no ansible-playbook process runs above this module (a remote connection?), so the lock is not '
                    'renewed: it expires %d s after it was taken unless state=absent gives it back first; raise '
                    'duration for longer runs' % params['duration'])
    return result
