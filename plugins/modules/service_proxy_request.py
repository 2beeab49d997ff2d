#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: service_proxy_request
short_description: Ask a Service's HTTP API through the API server's service proxy, or at its external address
version_added: 0.2.0
description:
  - Sends C(GET <path>) to a Service through the API server's service proxy
    (C(/api/v1/namespaces/<namespace>/services/<service>:<port>/proxy/<path>)), so a tool's own health API can be
    checked with no port-forward and whatever the Service's exposure.
  - "Or, with O(external), at an external address as a user of the exposed tool would: C(https://<host><path>)
    sent to O(external.address) (the ingress gateway's or a LoadBalancer's address, so no DNS record is needed)
    with O(external.host) as SNI and C(Host), the chain and name checked against O(external.ca_path) or the
    system's roots; or plain C(http). With O(external.source_ranges) and O(external.status_outside), the expected
    answer depends on whether this controller's address (O(external.source_address), by default the address its
    kernel uses to reach O(external.address)) is inside the allowed ranges."
  - Retries until the answer has one of the expected status codes (and, with O(expect_targets_up), Prometheus
    reports those targets up) or O(timeout) passes; then fails with a message that names the Service or URL, the
    path and what it answered (for targets, which are down and Prometheus' C(lastError)).
  - "O(login): first POSTs a form or JSON body to a login path of the same Service and sends the cookies it sets
    with the request (Grafana's C(/login), Kiali's C(/kiali/api/authenticate)). With O(login.service_account),
    a short-lived token of that ServiceAccount from the TokenRequest API is put in the field O(login.service_account_field);
    the token is never returned."
  - The API server authenticates the caller and drops its C(Authorization) header, so a tool's own login cannot
    travel in that header; hence the cookie login.
  - "On the controller (C(connection: local), its own Python) the action plugin runs the logic in Ansible's worker
    process and prints a progress line to standard error every O(progress_interval) seconds while it waits."
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
    description: Namespace of the Service (and of O(login.service_account)). Required with O(service).
    type: str
  service:
    description: Name of the Service. One of O(service) and O(external) is required.
    type: str
  port:
    description: Port of the Service, by name or number; empty for its only port.
    type: str
    default: ""
  external:
    description: Ask at an external address instead of through the service proxy.
    type: dict
    suboptions:
      host:
        description: Host name of the URL; the C(Host) header, and with C(https) the SNI and the name the certificate must cover.
        type: str
        required: true
      address:
        description: Address to connect to (an IP, so that no DNS record is needed); default O(external.host).
        type: str
        default: ""
      port:
        description: TCP port; default 443 for C(https), 80 for C(http).
        type: int
      scheme:
        description: C(https) or C(http).
        type: str
        choices: [https, http]
        default: https
      ca_path:
        description: PEM file of the CA certificates that verify the served chain; default the system's trust store.
        type: path
      source_address:
        description:
          - The address the target sees this controller's requests come from; default the local address the
            controller's kernel picks to reach O(external.address). Set it when NAT sits in between.
        type: str
        default: ""
      source_ranges:
        description: CIDRs allowed to reach the target (with O(external.status_outside)).
        type: list
        elements: str
        default: []
      status_outside:
        description:
          - The status codes expected instead of O(status) when the source is outside O(external.source_ranges),
            for example V(403) from a gateway's policy, or V(-1) (no answer at all) from a load balancer that drops
            what comes from outside its ranges.
        type: list
        elements: int
        default: []
  path:
    description: Path to ask, for example C(/-/ready).
    type: str
    default: /
  query:
    description: Query parameters.
    type: dict
    default: {}
  status:
    description:
      - The HTTP status codes that end the wait successfully. V(-1) accepts no answer at all (connection refused,
        reset or timed out).
    type: list
    elements: int
    default: [200]
  expect_targets_up:
    description:
      - With a path of Prometheus' C(/api/v1/targets), also wait until an active target of pods labelled C(app)
        with each of these values is up.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to keep asking until one of O(status) is answered; V(0) asks once.
    type: int
    default: 60
  request_timeout:
    description: Seconds one request may take.
    type: int
    default: 10
  progress_interval:
    description: Seconds between two progress lines while waiting (in-process runs only). V(0) prints none.
    type: float
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

- name: Grafana at its gateway URL asks for a login, from inside the allowed ranges; refused (403) from outside
  servicemesh.istio.service_proxy_request:
    external:
      host: grafana.obs.example.com
      address: 203.0.113.10
      ca_path: /etc/pki/acme-staging-roots.pem
      source_ranges: [198.51.100.0/24]
      status_outside: [403]
    path: /
    status: [302]

- name: Prometheus at its LoadBalancer address, whose source ranges drop this controller
  servicemesh.istio.service_proxy_request:
    external:
      host: 203.0.113.20
      scheme: http
      port: 9090
      source_ranges: [198.51.100.0/24]
      status_outside: [-1]
    path: /-/ready

- name: Prometheus scrapes istiod (waits, printing which targets are down and why)
  servicemesh.istio.service_proxy_request:
    namespace: istio-system
    service: prometheus
    port: "9090"
    path: /api/v1/targets
    query: {state: active}
    expect_targets_up: [istiod]
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
  description: The API server path that was asked, or with O(external) the URL.
  returned: always
  type: str
  sample: /api/v1/namespaces/istio-system/services/prometheus:9090/proxy/-/ready
headers:
  description: The C(location), C(www-authenticate) and C(content-type) headers of the last answer, lower-case.
  returned: always
  type: dict
  sample: {"location": "/login"}
source:
  description: With O(external), the address this controller's requests come from as judged (see O(external.source_address)).
  returned: with O(external)
  type: str
  sample: 198.51.100.7
source_inside:
  description: Whether RV(source) is inside O(external.source_ranges).
  returned: with O(external.source_ranges) and O(external.status_outside)
  type: bool
  sample: true
error:
  description: Why no answer came, when no answer (V(-1)) was what was expected.
  returned: when RV(status) is V(-1) and that was expected
  type: str
  sample: "ConnectionResetError: [Errno 104] Connection reset by peer"
targets:
  description:
    - With O(expect_targets_up), Istio's targets in Prometheus' answer; C(up) and C(down) lists of C(job), C(url),
      C(health), C(error) (Prometheus' C(lastError)) and C(app), and C(missing), the apps with no target up.
  returned: with O(expect_targets_up)
  type: dict
  sample: {"missing": [], "up": [{"app": "istiod", "url": "http://10.96.0.12:15014/metrics", "health": "up"}]}
logged_in:
  description: Whether a login was done before the request.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _service_proxy


def main():
    spec = dict(_service_proxy.SERVICE_PROXY_SPEC)
    spec.update(_k8s.AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **_service_proxy.SERVICE_PROXY_CHECKS)
    result = _service_proxy.run_external_or_proxy(module.params)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
