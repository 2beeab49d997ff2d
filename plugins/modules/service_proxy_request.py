#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: service_proxy_request
short_description: Ask a Service's HTTP API through the Kubernetes API server's service proxy
version_added: 0.2.0
description:
  - Sends C(GET <path>) to a Service through the API server's service proxy
    (C(/api/v1/namespaces/<namespace>/services/<service>:<port>/proxy/<path>)), so a tool's own health API can be
    checked with no port-forward and whatever the Service's exposure.
  - Retries until the answer has one of the O(status) codes or O(timeout) passes; then fails with a message that
    names the Service, the path and what it answered.
  - "O(login): first POSTs a form or JSON body to a login path of the same Service and sends the cookies it sets
    with the request (Grafana's C(/login), Kiali's C(/kiali/api/authenticate)). With O(login.service_account),
    a short-lived token of that ServiceAccount from the TokenRequest API is put in the field O(login.service_account_field);
    the token is never returned."
  - The API server authenticates the caller and drops its C(Authorization) header, so a tool's own login cannot
    travel in that header; hence the cookie login.
  - The module only reads (a login creates a session, not a cluster object); it never reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - kubernetes.core.k8s_auth_options
  - servicemesh.istio.connection
requirements:
  - kubernetes >= 29.0.0
author:
  - servicemesh.istio contributors (@servicemesh-istio)
options:
  namespace:
    description: Namespace of the Service.
    type: str
    required: true
  service:
    description: Name of the Service.
    type: str
    required: true
  port:
    description: Port of the Service, by name or number; empty for its only port.
    type: str
    default: ""
  path:
    description: Path to ask, for example C(/-/ready).
    type: str
    default: /
  query:
    description: Query parameters.
    type: dict
    default: {}
  status:
    description: The HTTP status codes that end the wait successfully.
    type: list
    elements: int
    default: [200]
  timeout:
    description: Seconds to keep asking until one of O(status) is answered; V(0) asks once.
    type: int
    default: 60
  request_timeout:
    description: Seconds one request may take.
    type: int
    default: 10
  login:
    description: A login to do before each request; its cookies go with the request.
    type: dict
    suboptions:
      path:
        description: Path of the login endpoint on the same Service.
        type: str
        required: true
      format:
        description: How the fields are sent.
        type: str
        choices: [form, json]
        default: form
      fields:
        description: The fields (for example C(user) and C(password)); never logged.
        type: dict
        default: {}
      service_account_field:
        description: Field that receives the ServiceAccount token (with O(login.service_account)).
        type: str
        default: ""
      service_account:
        description: ServiceAccount whose short-lived token (TokenRequest API) goes in O(login.service_account_field).
        type: str
        default: ""
      service_account_namespace:
        description: Namespace of that ServiceAccount; defaults to O(namespace).
        type: str
        default: ""
      service_account_ttl:
        description: Lifetime of the token in seconds (at least 600, the API server's minimum).
        type: int
        default: 600
"""

EXAMPLES = r"""
- name: Prometheus is ready
  servicemesh.istio.service_proxy_request:
    namespace: istio-system
    service: prometheus
    port: "9090"
    path: /-/ready

- name: Kiali's graph of Bookinfo, logged in with a short-lived token of the kiali ServiceAccount
  servicemesh.istio.service_proxy_request:
    namespace: istio-system
    service: kiali
    port: "20001"
    path: /kiali/api/namespaces/graph
    query: {namespaces: default, graphType: versionedApp, duration: 600s}
    login:
      path: /kiali/api/authenticate
      service_account_field: token
      service_account: kiali
  register: graph
"""

RETURN = r"""
status:
  description: The HTTP status of the last answer (V(-1) when none came).
  returned: always
  type: int
  sample: 200
content:
  description: The body of the last answer, cut at 4000 characters.
  returned: always
  type: str
  sample: Prometheus Server is Ready.
json:
  description: The body parsed as JSON, or null when it is not JSON.
  returned: always
  type: raw
  sample: {"strategy": "token"}
attempts:
  description: How many times the Service was asked.
  returned: always
  type: int
  sample: 1
url:
  description: The API server path that was asked.
  returned: always
  type: str
  sample: /api/v1/namespaces/istio-system/services/prometheus:9090/proxy/-/ready
logged_in:
  description: Whether a login was done before the request.
  returned: success
  type: bool
  sample: false
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _service_proxy


def main():
    spec = dict(_service_proxy.SERVICE_PROXY_SPEC)
    spec.update(_k8s.AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    error = _k8s.import_kubernetes()
    if error:
        module.fail_json(msg=missing_required_lib('kubernetes'), exception=error)
    try:
        api = _k8s.build_api_client(module.params)
    except _k8s.KubeConfigError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    result = _service_proxy.run_service_proxy(module.params, _service_proxy.ProxyClient(api, _k8s.kubernetes))
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
