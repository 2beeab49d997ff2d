# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""api_unreachable: which registered results count as the API server not
answering, in the shapes ansible-core 2.19 gives `until` (recorded from real
kubernetes.core.k8s failures: a refused connection at the client's first
request, a connection dropped mid-request, an object the API server refused)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ansible_collections.servicemesh.istio.plugins.test.api_unreachable import api_unreachable

ROOT = Path(__file__).resolve().parents[4]


def test_shapes():
    assert not api_unreachable({'failed': False, 'changed': True})
    # kubernetes.core's fail_from_exception, as `until` sees it before normalisation
    assert api_unreachable({'failed': True, 'exception': '(traceback unavailable)', '_ansible_parsed': True,
                            'changed': False, 'attempts': 1})
    assert api_unreachable({'failed': True, 'msg': "Failed to create object: ('Connection aborted.', "
                                                   "RemoteDisconnected('Remote end closed connection without response'))"})
    # the API server answered: fails at once
    assert not api_unreachable({'failed': True, 'msg': 'Failed to create object: b\'{"kind":"Status","message":'
                                                       '"Deployment.apps \\"x\\" is invalid","code":422}\''})
    assert not api_unreachable({'failed': True, 'msg': 'some other error', 'exception': 'Traceback ...'})


def test_every_kubernetes_task_of_every_role_retries_with_it():
    """The roles' kubernetes.core.k8s and k8s_info tasks all carry the retry."""
    missing = []

    def walk(tasks, where):
        for task in tasks or []:
            if not isinstance(task, dict):
                continue
            for key in ('block', 'rescue', 'always'):
                walk(task.get(key), where)
            if 'kubernetes.core.k8s' in task or 'kubernetes.core.k8s_info' in task:
                until = str(task.get('until', ''))
                retried = until in ('%s is not servicemesh.istio.api_unreachable' % task.get('register'),
                                    # a probe that tries every failure again (cert-manager's webhook)
                                    '%s is succeeded' % task.get('register'))
                if task.get('register') and retried and task.get('retries'):
                    continue
                missing.append('%s: %s' % (where, task.get('name')))

    files = sorted((ROOT / 'roles').glob('*/tasks/*.yml'))
    assert files
    for path in files:
        walk(yaml.safe_load(path.read_text()), path.relative_to(ROOT))
    assert missing == []
