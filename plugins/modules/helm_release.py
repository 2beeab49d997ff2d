#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: helm_release
short_description: A Helm release by kubernetes.core.helm, riding out an API server outage
version_added: 0.2.0
description:
  - Installs, upgrades or uninstalls one Helm release with M(kubernetes.core.helm), as that module would, and handles
    what an API server outage does to Helm.
  - "A transient API error (the connection refused, reset or timed out, C(Kubernetes cluster unreachable), an API
    server that cannot handle the request yet) makes it run M(kubernetes.core.helm) again, with growing pauses, until
    O(retry_timeout) seconds have passed. Each try is printed as it happens and listed in RV(retries) and in the task's
    warnings. When the API server never came back, the task fails saying so first."
  - "A release an install never finished (C(pending-install): the run was interrupted or the API server went away
    during the install) makes Helm refuse every further operation. Such a release never had a deployed revision, so
    with O(clear_pending_install) it is uninstalled (as M(kubernetes.core.helm) with O(release_state=absent) does) and
    installed again, and the task says so. The collection's playbooks hold the run lock (M(servicemesh.istio.run_lock))
    around this, so no other run of the collection can be the one installing; used outside them, an install by
    another tool still under way would be taken for an interrupted one: set O(clear_pending_install=false) there."
  - A release left C(pending-upgrade) or C(pending-rollback) has a deployed revision behind it and is never rolled back
    automatically; the task fails naming the release, its revision and the C(helm history) and C(helm rollback)
    commands.
  - "Only an action plugin: the work is done by M(kubernetes.core.helm) and M(kubernetes.core.helm_info), wherever the
    task runs."
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details:
      - The action plugin runs M(kubernetes.core.helm) and M(kubernetes.core.helm_info) on the task's host.
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: full
    membership:
      - servicemesh.istio.kubernetes
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - M(kubernetes.core.helm)'s check mode; transient errors are retried the same way, and a C(pending-install) release
        is reported, not removed.
  diff_mode:
    support: full
    details:
      - M(kubernetes.core.helm)'s diff (with the helm-diff plugin).
  platform:
    platforms: all
author:
  - servicemesh.istio contributors (@servicemesh-istio)
options:
  release_name:
    description: The release's name.
    type: str
    required: true
    aliases: [name]
  release_namespace:
    description: The release's namespace.
    type: str
    required: true
    aliases: [namespace]
  release_state:
    description: V(present) installs or upgrades, V(absent) uninstalls.
    type: str
    choices: [present, absent]
    default: present
    aliases: [state]
  chart_ref:
    description: The chart, as M(kubernetes.core.helm) takes it (a URL of an archive, a path, or a name with O(chart_repo_url)).
    type: path
  chart_repo_url:
    description: The chart repository's URL.
    type: str
  chart_version:
    description: The chart's version.
    type: str
  release_values:
    description: Values of the release.
    type: dict
    default: {}
    aliases: [values]
  create_namespace:
    description: Create O(release_namespace) when it does not exist.
    type: bool
    default: false
  wait:
    description: Wait for the release's resources, as M(kubernetes.core.helm) does.
    type: bool
    default: false
  binary_path:
    description: The Helm binary.
    type: path
  kubeconfig:
    description: The kubeconfig file (or its content as a dict).
    type: raw
    aliases: [kubeconfig_path]
  context:
    description: The kubeconfig context.
    type: str
    aliases: [kube_context]
  retry_timeout:
    description: Seconds for which transient API errors are tried again; V(0) fails on the first.
    type: int
    default: 120
  clear_pending_install:
    description: Uninstall a release left C(pending-install) by an install that never finished, then install it again.
    type: bool
    default: true
notes:
  - The connection options come from C(module_defaults) of C(group/servicemesh.istio.kubernetes) or
    C(group/kubernetes.core.helm) when the task does not set them.
requirements:
  - the kubernetes.core collection and Helm 3
seealso:
  - module: kubernetes.core.helm
  - module: servicemesh.istio.run_lock
"""

EXAMPLES = r"""
- name: Install istiod, riding out up to two minutes of API outage
  servicemesh.istio.helm_release:
    name: istiod
    chart_ref: https://istio-release.storage.googleapis.com/charts/istiod-1.30.3.tgz
    release_namespace: istio-system
    release_values:
      meshConfig:
        accessLogFile: /dev/stdout
    retry_timeout: 120
"""

RETURN = r"""
retries:
  description: Each transient API error that was tried again, in order.
  returned: always
  type: list
  elements: str
  sample: ["Helm could not reach the API server for release istio-system/istiod (dial tcp 127.0.0.1:6443: connect:
           connection refused): tried again after 1.0 s"]
cleared_pending:
  description: The release an install never finished, uninstalled before installing it again.
  returned: always
  type: list
  elements: str
  sample: ["Helm release istio-system/istio-base was pending-install (revision 1, last changed 2026-11-30 23:40:01
           +0000 UTC), left by an install that never finished: uninstalled and installed again"]
status:
  description: What M(kubernetes.core.helm) returns for the release.
  returned: when the release exists
  type: dict
command:
  description: The last Helm command M(kubernetes.core.helm) ran.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.servicemesh.istio.plugins.module_utils._helm import HELM_RELEASE_SPEC


def main():
    module = AnsibleModule(argument_spec=HELM_RELEASE_SPEC, supports_check_mode=True)
    module.fail_json(msg='servicemesh.istio.helm_release runs as an action plugin; its module is not run on its own.')


if __name__ == '__main__':
    main()
