#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_ready
short_description: Wait until Kubernetes objects and pods are ready, and say why not
version_added: 0.1.0
description:
  - Waits, in one task, until every listed object is ready and every listed set of pods passes its checks, then
    returns what it found (for example a Service's external address).
  - "Readiness per kind: C(Deployment) rolled out like C(kubectl rollout status) (spec observed, every replica updated
    and available, no old replica left); C(DaemonSet) updated, ready and available on every node it is scheduled to;
    C(StatefulSet) all replicas ready and updated; C(CustomResourceDefinition) C(Established); C(Service) of type
    C(LoadBalancer) has an external IP or host name (other types: it exists); C(MutatingWebhookConfiguration) and
    C(ValidatingWebhookConfiguration) exist (and carry a C(caBundle) with O(resources[].require_ca_bundle));
    C(Namespace) is C(Active); cert-manager's C(ClusterIssuer) and C(Issuer) have C(Ready=True) (for their current
    generation, when the condition says which)."
  - "Pod checks: every pod that is not terminating is C(Ready), has each container of O(pods[].containers) (regular
    containers and native sidecars, that is init containers with C(restartPolicy: Always)) and none of
    O(pods[].absent_containers)."
  - On timeout the task fails with every item still pending and why, the pods' waiting reasons, and the latest events
    of the namespaces involved.
  - "When the task runs on the controller (C(connection: local), no become, no async, no task C(environment), the
    controller's Python), the action plugin runs the same code in the controller's worker process, which saves
    starting Python and importing the Kubernetes client, and prints a progress line to standard error every
    O(progress_interval) seconds while it waits. Set C(SERVICEMESH_ISTIO_IN_PROCESS=0) to always run it as a module."
  - The module only reads; it never reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - servicemesh.istio.wait
  - kubernetes.core.k8s_auth_options
  - servicemesh.istio.connection
attributes:
  async:
    support: full
    details:
      - An async task always runs as a module.
author:
  - servicemesh.istio contributors (@servicemesh-istio)
options:
  resources:
    description:
      - Objects to wait for. Each is selected by O(resources[].name) or by O(resources[].label_selectors).
    type: list
    elements: dict
    default: []
    suboptions:
      kind:
        description: Kind of the object.
        type: str
        required: true
        choices: [ClusterIssuer, CustomResourceDefinition, DaemonSet, Deployment, Issuer, MutatingWebhookConfiguration,
                  Namespace, Service, StatefulSet, ValidatingWebhookConfiguration]
      name:
        description: Name of the object. Mutually exclusive with O(resources[].label_selectors).
        type: str
      namespace:
        description: Namespace of the object; required for namespaced kinds, refused for cluster-scoped ones.
        type: str
      label_selectors:
        description:
          - Label selectors (ANDed); every object they select must be ready, and at least O(resources[].min_count)
            must exist.
        type: list
        elements: str
      min_count:
        description: With O(resources[].label_selectors), how many objects must exist at least.
        type: int
        default: 1
      require_address:
        description: For a C(LoadBalancer) Service, wait for its external address.
        type: bool
        default: true
      require_ca_bundle:
        description: For a webhook configuration, wait until every webhook has a C(caBundle).
        type: bool
        default: false
  pods:
    description:
      - Sets of pods to check. Their summaries are returned in RV(pods) in any case.
    type: list
    elements: dict
    default: []
    suboptions:
      namespace:
        description: Namespace of the pods.
        type: str
        required: true
      label_selectors:
        description: Label selectors (ANDed); none selects every pod of the namespace.
        type: list
        elements: str
      containers:
        description: Containers every pod must have, for example C(istio-proxy).
        type: list
        elements: str
        default: []
      absent_containers:
        description: Containers no pod may have.
        type: list
        elements: str
        default: []
      min_pods:
        description: How many pods must exist at least.
        type: int
        default: 1
      terminated_containers:
        description:
          - Instead of until every pod is C(Ready), wait until these containers of every pod have terminated, or the
            pod has ended (phase C(Succeeded) or C(Failed), for example by its deadline). For pods that run once, such
            as a test client with C(restartPolicy=Never) whose sidecar keeps running after it.
          - Whether they succeeded is not judged here; read the pods' status afterwards.
        type: list
        elements: str
        default: []
        version_added: 0.2.0
  events:
    description: How many of the latest events per namespace the failure message quotes (V(0) for none).
    type: int
    default: 8
  progress_interval:
    description:
      - Seconds between two progress lines while waiting (in-process way only). V(0) prints none.
    type: float
    default: 10
notes:
  - Needs the C(kubernetes) Python library on the host that runs it.
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Wait for istiod, its injection webhook and the gateway's external IP
  servicemesh.istio.wait_for_ready:
    resources:
      - kind: Deployment
        name: istiod
        namespace: istio-system
      - kind: MutatingWebhookConfiguration
        name: istio-sidecar-injector
      - kind: Service
        name: istio-ingressgateway
        namespace: istio-system
    timeout: 300
  register: mesh

- name: Every Bookinfo pod Ready with its sidecar
  servicemesh.istio.wait_for_ready:
    resources:
      - kind: Deployment
        namespace: default
        label_selectors: ["app in (productpage,details,ratings,reviews)"]
        min_count: 6
    pods:
      - namespace: default
        label_selectors: ["app in (productpage,details,ratings,reviews)"]
        containers: [istio-proxy]
"""

RETURN = r"""
resources:
  description: One entry per object found.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: Its kind.
      type: str
    name:
      description: Its name.
      type: str
    namespace:
      description: Its namespace (empty for cluster-scoped objects).
      type: str
    ready:
      description: Whether it was ready at the last attempt.
      type: bool
    detail:
      description: Its state in words, for example C(1/1 updated, 1/1 ready, 1/1 available).
      type: str
    addresses:
      description: Services only, the external addresses (IPs or host names).
      type: list
      elements: str
    type:
      description: Services only, the Service type.
      type: str
    cluster_ip:
      description: Services only, the cluster IP.
      type: str
    ports:
      description: Services only, name, port and node_port of each port.
      type: list
      elements: dict
  sample: [{kind: Service, name: istio-ingressgateway, namespace: istio-system, ready: true, type: LoadBalancer,
            detail: LoadBalancer at 203.0.113.10, addresses: [203.0.113.10], cluster_ip: 10.0.0.20, ports: []}]
pods:
  description: A summary of each pod selected by O(pods), terminating ones included.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Pod name.
      type: str
    namespace:
      description: Pod namespace.
      type: str
    controller:
      description: Name of the Deployment (or other controller) the pod belongs to.
      type: str
    node:
      description: Node it runs on.
      type: str
    phase:
      description: Pod phase.
      type: str
    ready:
      description: Whether its C(Ready) condition is true.
      type: bool
    terminating:
      description: Whether it is being deleted.
      type: bool
    containers:
      description: Its containers, native sidecars included.
      type: list
      elements: str
    native_sidecars:
      description: Its init containers with C(restartPolicy Always).
      type: list
      elements: str
    ready_containers:
      description: How many of RV(pods[].containers) are ready.
      type: int
    waiting:
      description: Waiting or terminated reasons per container, for example C(istio-proxy CrashLoopBackOff).
      type: list
      elements: str
    terminated:
      description: Its containers that have terminated.
      type: list
      elements: str
      version_added: 0.2.0
pending:
  description: What was not ready at the last attempt, in words (empty on success).
  returned: always
  type: list
  elements: str
events:
  description: The latest events of the namespaces involved.
  returned: failure
  type: list
  elements: str
elapsed:
  description: Seconds waited.
  returned: always
  type: float
attempts:
  description: How many times the objects were read.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _ready
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC


def argument_spec():
    spec = dict(_ready.WAIT_FOR_READY_SPEC)
    spec.update(WAIT_ARGUMENT_SPEC)
    spec.update(_k8s.AUTH_ARG_SPEC)
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = _ready.run_wait_for_ready(module.params)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
