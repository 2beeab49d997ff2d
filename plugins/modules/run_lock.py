#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: run_lock
short_description: One run at a time against a cluster, with a Lease as the lock
version_added: 0.2.0
description:
  - Takes or gives back a lock that keeps two runs (two AWX jobs, two people) from changing the same cluster at
    once, so that no Helm release is left C(pending-install) or C(pending-upgrade) by a race.
  - The lock is a C(coordination.k8s.io/v1) C(Lease) whose holder is O(run_id); its annotations say which run holds
    it, on which host and with which process id.
  - "O(state=present): when another run holds the Lease and renewed it within its duration, the task waits up to
    O(wait) seconds for it, then fails naming that run, when it last renewed the lock and when the lock expires.
    A Lease that its holder stopped renewing is taken over, with a warning naming that holder."
  - "While the C(ansible-playbook) process above the module runs, a small background process renews the Lease every
    third of O(duration) seconds, and gives it back as soon as that process ends, whether the run succeeded, failed or
    was killed. Without such a process above it (a remote connection), the module warns that the lock is not renewed:
    it then expires O(duration) seconds after it was taken unless O(state=absent) gives it back first."
  - O(state=absent) gives the lock back when O(run_id) holds it, and never removes another run's lock.
  - In check mode the module only reads, and fails the same way when another run holds the lock.
  - "When the task runs on the controller (C(connection: local), no become, no task C(environment), the controller's
    Python), the action plugin runs the same code in the controller's worker process. Set
    C(SERVICEMESH_ISTIO_IN_PROCESS=0) to always run it as a module."
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - kubernetes.core.k8s_auth_options
  - servicemesh.istio.connection
attributes:
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: full
    membership:
      - servicemesh.istio.kubernetes
  async:
    support: none
  check_mode:
    support: full
    details:
      - Reads the Lease, fails the same way when another run holds it, and writes nothing.
author:
  - servicemesh.istio contributors (@servicemesh-istio)
options:
  state:
    description: V(present) takes the lock, V(absent) gives it back.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description:
      - This run's identity, the Lease's holder. It must differ between runs and stay the same within one run (set
        it once, for example with M(ansible.builtin.set_fact) from a random string).
    type: str
    required: true
  description:
    description: What the run is, for the message another run prints (for example V(AWX job 42 (site.yml))).
    type: str
    default: ansible-playbook
  name:
    description: The Lease's name.
    type: str
    default: servicemesh-istio-run
  namespace:
    description: The Lease's namespace; it must exist (C(kube-system) exists on every cluster).
    type: str
    default: kube-system
  duration:
    description:
      - Seconds after its last renewal at which the lock counts as abandoned and another run may take it over.
    type: int
    default: 120
  wait:
    description: Seconds to wait for another run's lock before failing; V(0) fails at once.
    type: int
    default: 0
  keep_until_exit:
    description:
      - Renew the lock in the background while the C(ansible-playbook) process runs, and give it back when it ends.
    type: bool
    default: true
notes:
  - Needs C(get), C(create), C(update) and C(delete) on C(leases) in O(namespace).
requirements:
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Make a run identity once
  ansible.builtin.set_fact:
    run_id: "{{ lookup('ansible.builtin.password', '/dev/null', chars=['ascii_lowercase', 'digits'], length=16) }}"

- name: Take the lock (wait up to 10 minutes for another run)
  servicemesh.istio.run_lock:
    run_id: "{{ run_id }}"
    description: site.yml by {{ lookup('ansible.builtin.env', 'USER') }}
    wait: 600

- name: Give it back
  servicemesh.istio.run_lock:
    run_id: "{{ run_id }}"
    state: absent
"""

RETURN = r"""
state:
  description:
    - What the lock was before the task, V(free), V(mine) (this run held it already), V(expired) (taken over) or
      V(held) (by another run, and the task failed); for O(state=absent), V(released), V(free) or V(not mine).
  returned: always
  type: str
  sample: free
holder:
  description: The other run that held the lock (its identity, description, host, pid and timing), when there was one.
  returned: always
  type: dict
  sample: {"holder": "k3v9", "description": "AWX job 41 (site.yml)", "host": "awx-ee-1", "pid": "81",
           "renewed_seconds_ago": 12, "expires_in": 108, "duration": 120, "acquired": "2026-11-30T10:02:11.100000Z"}
waited:
  description: Seconds waited for another run's lock.
  returned: when O(state=present)
  type: int
  sample: 0
kept_until_exit:
  description: Whether a background process renews the lock and gives it back when ansible-playbook ends.
  returned: when O(state=present)
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _run_lock


def main():
    spec = dict(_run_lock.RUN_LOCK_SPEC)
    spec.update(_k8s.AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    error = _k8s.import_kubernetes()
    if error:
        module.fail_json(msg=missing_required_lib('kubernetes'), exception=error)

    def make_store():
        return _run_lock.LeaseStore(_k8s.build_api_client(module.params), _k8s.kubernetes, _k8s.ApiException)

    result = _run_lock.run_lock(module.params, module.check_mode, make_store, _k8s.ApiException,
                                _k8s.api_error_text, _k8s.transport_error_text, _k8s.KubeConfigError)
    for warning in result.pop('warnings', []):
        module.warn(warning)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
