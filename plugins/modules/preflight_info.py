#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_info
short_description: Read what a mesh install needs to know before it changes anything
version_added: 0.1.0
description:
  - Reads, in one task, the facts the collection's preflight checks judge, and returns them; it judges nothing itself
    except that the Kubernetes API server can be reached.
  - "Kubernetes: the API server's version and, with O(nodes), every node with its C(Ready) condition and internal
    address."
  - "O(dry_run_create): creates each manifest with a server-side dry run (C(dryRun=All)) and returns whether the API
    server accepted it and its message, for example whether C(LoadBalancer) Services are allowed."
  - "Helm (O(helm_binary)): the version of the Helm binary, or why it could not be run."
  - "Chart repository (O(chart_repo)): reads its C(index.yaml) and returns, for each of O(charts), whether
    O(chart_version) exists, its download URL and the latest versions the repository has, or why the index could not
    be read."
  - "When the task runs on the controller (C(connection: local), no become, no async, no task C(environment), the
    controller's Python), the action plugin runs the same code in the controller's worker process. Set
    C(SERVICEMESH_ISTIO_IN_PROCESS=0) to always run it as a module."
  - The module only reads (a dry run creates nothing); it never reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
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
  nodes:
    description: Read the nodes.
    type: bool
    default: true
  dry_run_create:
    description:
      - Manifests to create with a server-side dry run. Each needs a C(kind) the module knows (C(Service),
        C(Deployment), C(Namespace) and the other kinds of M(servicemesh.istio.wait_for_ready)) and C(metadata.name);
        C(metadata.namespace) defaults to C(default).
    type: list
    elements: dict
    default: []
  objects:
    description:
      - Objects to read, of any kind the API server serves, each by C(api_version) and C(kind), in C(namespace) (all
        namespaces when empty), and by C(name) or C(label_selectors) (all objects of the kind when neither). One task
        reads them all, where M(kubernetes.core.k8s_info) costs a module run per kind.
      - A kind the API server does not serve (its CRD is not installed) reads as no object, with C(served=false).
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: C(v1) or C(<group>/<version>), for example C(networking.istio.io/v1).
        type: str
        required: true
      kind:
        description: The kind, for example C(VirtualService).
        type: str
        required: true
      namespace:
        description: The namespace (ignored for a kind that is not namespaced).
        type: str
      name:
        description: The object's name.
        type: str
      label_selectors:
        description:
          - Label selectors, all of which must match (written as M(kubernetes.core.k8s_info) takes them).
          - With C(name), the object is read only if its labels match (M(kubernetes.core.k8s_info) ignores them when
            given a name).
        type: list
        elements: str
        default: []
  helm_binary:
    description: Path or name of the Helm binary whose version to read.
    type: str
  chart_repo:
    description: URL of a Helm chart repository whose C(index.yaml) to read.
    type: str
  charts:
    description: Charts to look for in O(chart_repo).
    type: list
    elements: str
    default: []
  chart_version:
    description: Version of O(charts) to look for.
    type: str
  request_timeout:
    description: Seconds allowed for each request to the API server or the chart repository.
    type: float
    default: 30
notes:
  - Needs the C(kubernetes) Python library on the host that runs it, unless it only reads Helm and the chart
    repository (O(nodes=false), no O(dry_run_create), and O(helm_binary) or O(chart_repo) given).
  - The Kubernetes API server is asked only when O(nodes), O(dry_run_create) or O(objects) is set, or nothing else is
    asked.
seealso:
  - module: servicemesh.istio.wait_for_ready
  - module: kubernetes.core.k8s_cluster_info
"""

EXAMPLES = r"""
- name: Read the cluster, Helm and the chart repository at once
  servicemesh.istio.preflight_info:
    helm_binary: helm
    chart_repo: https://istio-release.storage.googleapis.com/charts
    charts: [base, istiod, gateway]
    chart_version: 1.30.4
    dry_run_create:
      - apiVersion: v1
        kind: Service
        metadata: {name: preflight-lb, namespace: default}
        spec: {type: LoadBalancer, ports: [{port: 80}]}
  register: pre

- name: Read a Service and every VirtualService in one task
  servicemesh.istio.preflight_info:
    nodes: false
    objects:
      - {api_version: v1, kind: Service, namespace: default, name: reviews}
      - {api_version: networking.istio.io/v1, kind: VirtualService}
  register: found

- name: Refuse a cluster with fewer than two Ready nodes
  ansible.builtin.assert:
    that: pre.nodes | selectattr('ready') | list | length >= 2
"""

RETURN = r"""
kubernetes:
  description: The API server's version.
  returned: when the API server is asked
  type: dict
  contains:
    git_version:
      description: As the server reports it, for example C(v1.34.4-eks.1).
      type: str
    version:
      description: Its X.Y.Z part.
      type: str
    platform:
      description: The server's platform, for example C(linux/amd64).
      type: str
  sample: {git_version: v1.34.4, version: 1.34.4, platform: linux/amd64}
nodes:
  description: Every node, sorted by name.
  returned: when O(nodes) is true
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
    ready:
      description: Whether its C(Ready) condition is true.
      type: bool
    reason:
      description: Why it is not Ready (empty when it is).
      type: str
    internal_ip:
      description: Its C(InternalIP) address.
      type: str
    kubelet_version:
      description: Its kubelet's version.
      type: str
    unschedulable:
      description: Whether it is cordoned.
      type: bool
dry_run:
  description: One entry per O(dry_run_create) manifest.
  returned: when the API server is asked
  type: list
  elements: dict
  contains:
    kind:
      description: Kind of the manifest.
      type: str
    name:
      description: Its name.
      type: str
    namespace:
      description: Its namespace as given.
      type: str
    accepted:
      description: Whether the API server accepted it.
      type: bool
    message:
      description: C(accepted), C(exists already), or the API server's refusal.
      type: str
objects:
  description: One entry per O(objects) query, in the order given.
  returned: when the API server is asked
  type: list
  elements: dict
  contains:
    api_version:
      description: As given.
      type: str
    kind:
      description: As given.
      type: str
    namespace:
      description: As given (empty for all namespaces).
      type: str
    name:
      description: As given (empty when not given).
      type: str
    label_selectors:
      description: As given.
      type: list
      elements: str
    served:
      description: Whether the API server serves the kind.
      type: bool
    resources:
      description: The objects found, each with its C(apiVersion) and C(kind), as M(kubernetes.core.k8s_info) returns
        them.
      type: list
      elements: dict
helm:
  description: The Helm binary.
  returned: when O(helm_binary) is given
  type: dict
  contains:
    path:
      description: As given.
      type: str
    output:
      description: What C(helm version --short) printed.
      type: str
    version:
      description: Its X.Y.Z (empty when it could not be run).
      type: str
    error:
      description: Why it could not be run (empty when it ran).
      type: str
chart_repo:
  description: The chart repository.
  returned: when O(chart_repo) is given
  type: dict
  contains:
    url:
      description: As given.
      type: str
    index_url:
      description: The index read.
      type: str
    error:
      description: Why the index could not be read (empty when it was).
      type: str
    charts:
      description: Per chart of O(charts) its C(found) flag, C(url) of O(chart_version), number of C(versions) and the
        C(latest) eight versions.
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _ready


def argument_spec():
    spec = dict(_ready.PREFLIGHT_INFO_SPEC)
    spec.update(_k8s.AUTH_ARG_SPEC)
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)

    def run_command(argv):
        return module.run_command(argv, handle_exceptions=False)

    def fetch(url, timeout):
        return open_url(url, timeout=timeout).read()

    result = _ready.run_preflight_info(module.params, run_command, fetch)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
