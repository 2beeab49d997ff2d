#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxy_config_info
short_description: What Istio proxies will do, read from the configuration istiod pushes to them
version_added: 0.2.0
description:
  - Reads the Envoy configuration (clusters, listeners, routes) of the Istio proxies of selected pods, and says what
    they will do with traffic, so that a play verifies behaviour rather than the existence of objects.
  - "Per inbound port of a sidecar, the mTLS mode it enforces: C(strict) (only TLS with a client certificate is
    accepted), C(permissive) (TLS and plaintext) or C(disabled) (plaintext only). Per outbound host, the routes
    with their weighted destinations (service, port, subset, weight), redirects, timeouts and retries. Per gateway
    server, the port, the SNI hosts and the hosts its routes serve, the TLS mode and the secret
    (C(kubernetes://<credentialName>)). Per outbound cluster, the TLS it originates."
  - "It reports problems: routes that send traffic to a cluster istiod did not push, for example a VirtualService
    naming a subset that no DestinationRule defines."
  - "Two sources. C(envoy): what the running proxy holds, from C(pilot-agent request GET config_dump) run in its
    C(istio-proxy) container (as C(istioctl proxy-config) does). C(istiod): what istiod computes for that pod, over
    xDS on istiod's plaintext port 15010, presenting the node identity the pod's pilot-agent presents (node id
    C(sidecar~<podIP>~<pod>.<namespace>~<namespace>.svc.<cluster domain>), C(router~...) for a gateway, and
    metadata from the pod and its C(istio-proxy) container's C(ISTIO_META_*) environment); no Envoy has to run.
    C(auto) tries C(envoy) and falls back to C(istiod) when the container cannot be read, saying so in
    RV(proxies[].note)."
  - "istiod is reached at O(istiod_address), or at the ClusterIP of the C(istiod) Service (C(istiod-<revision>) for
    a pod injected by a revision) in O(istio_namespace). Where the controller cannot reach ClusterIPs, forward a port
    first (C(kubectl -n istio-system port-forward svc/istiod 15010)) and set O(istiod_address=127.0.0.1:15010)."
  - With O(expect), waits until every selected proxy shows what is expected (istiod pushes a change within about
    a second), then fails with what is still different at the timeout. Without it, one read (retried only while
    istiod or the API server cannot be reached).
  - "When the task runs on the controller (C(connection: local), no become, no async, no task C(environment), the
    controller's Python), the action plugin runs the same code in the controller's worker process and prints a
    progress line to standard error every O(progress_interval) seconds while it waits. Set
    C(SERVICEMESH_ISTIO_IN_PROCESS=0) to always run it as a module."
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
requirements:
  - kubernetes (Python library)
  - grpcio (Python library, source C(istiod))
  - xds-protos (Python library, the Envoy API protos)
options:
  namespace:
    description: Namespace of the pods.
    type: str
    required: true
  name:
    description: Name of one pod. Mutually exclusive with O(label_selectors).
    type: str
  label_selectors:
    description:
      - Label selectors (ANDed). Neither O(name) nor selectors selects every pod of O(namespace).
      - Only running pods with an C(istio-proxy) container (sidecar, native sidecar or gateway) are read; the others
        are listed in RV(skipped).
    type: list
    elements: str
    default: []
  source:
    description: Where the configuration is read from (see the description).
    type: str
    default: auto
    choices: [auto, envoy, istiod]
  istiod_address:
    description:
      - C(host:port) of istiod's plaintext xDS port. Default, the ClusterIP of the pod's istiod Service, port 15010.
    type: str
  istio_namespace:
    description: Namespace of istiod's Service.
    type: str
    default: istio-system
  cluster_domain:
    description: The cluster's DNS domain, part of the node identity.
    type: str
    default: cluster.local
  hosts:
    description:
      - Only return the routes of these hosts (a service's short name, or a domain of the virtual host). All the
        routes are still checked for problems.
    type: list
    elements: str
    default: []
  include_raw:
    description: Also return the configuration read, in Envoy's JSON form (large).
    type: bool
    default: false
  min_pods:
    description: How many pods with a proxy must be selected at least; fewer counts as not yet met.
    type: int
    default: 1
  expect:
    description:
      - What every selected proxy must show. The module waits for it (see the O(timeout) and back-off options).
    type: dict
    suboptions:
      inbound_mode:
        description: Every inbound port of every sidecar enforces this mTLS mode.
        type: str
        choices: [strict, permissive, disabled]
      routes:
        description: Routes for these hosts, with these weights per subset.
        type: list
        elements: dict
        default: []
        suboptions:
          host:
            description: A service's short name (C(reviews)) or a domain of the virtual host.
            type: str
            required: true
          weights:
            description:
              - "Weight per subset, for example C({v1: 80, v2: 20}); the key C('') is a destination without subset."
              - Compared with the first route of the host that has destinations.
            type: dict
          timeout:
            description:
              - The route's timeout, as a VirtualService's C(timeout) gives it (C(10s), C(500ms), C(1m30s)).
              - Compared with the first route of the host that has destinations, as a length of time.
            type: str
          retries:
            description:
              - The route's retry policy, as a VirtualService's C(retries) gives it. A route without one retries 0 times.
            type: dict
            suboptions:
              attempts:
                description: How many times the route retries.
                type: int
              per_try_timeout:
                description: The timeout of each try (C(2s)).
                type: str
              retry_on:
                description: Conditions to retry on (C(5xx,connect-failure)); the route must retry on each of them.
                type: str
      gateway_servers:
        description: Servers a gateway proxy must have.
        type: list
        elements: dict
        default: []
        suboptions:
          port:
            description: The Gateway's server port (the Service port, for example V(443)) or the listener's port.
            type: int
            required: true
          hosts:
            description: Hosts the server must serve (SNI names or route domains).
            type: list
            elements: str
            default: []
          tls_mode:
            description: The TLS mode of the server.
            type: str
            choices: [none, simple, mutual, istio_mutual]
          credential_name:
            description: The Secret the server must present (C(credentialName) of the Gateway).
            type: str
          destination:
            description:
              - A service the server's routes must send traffic to, as its FQDN
                (C(productpage.default.svc.cluster.local)) or short name.
            type: str
          https_redirect:
            description: Whether the server's routes redirect to HTTPS.
            type: bool
      clusters:
        description:
          - Clusters istiod must have pushed, by name, for example C(outbound|9080|v2|reviews.default.svc.cluster.local)
            (a subset's cluster exists once a DestinationRule defines the subset).
        type: list
        elements: str
        default: []
      traffic_policies:
        description:
          - The connection pool and outlier detection a DestinationRule's C(trafficPolicy) gives a host, which every
            outbound cluster of the host (each port and subset) must have.
          - Keys are C(connectionPool) and C(outlierDetection) fields in snake_case; only the keys given are compared.
        type: list
        elements: dict
        default: []
        suboptions:
          host:
            description: The host, as its FQDN (C(reviews.default.svc.cluster.local)) or short name.
            type: str
            required: true
          connection_pool:
            description: Limits of the host's connection pool.
            type: dict
            suboptions:
              max_connections:
                description: C(tcp.maxConnections).
                type: int
              http1_max_pending_requests:
                description: C(http.http1MaxPendingRequests).
                type: int
              http2_max_requests:
                description: C(http.http2MaxRequests).
                type: int
              max_retries:
                description: C(http.maxRetries).
                type: int
              max_requests_per_connection:
                description: C(http.maxRequestsPerConnection).
                type: int
          outlier_detection:
            description: The host's outlier detection.
            type: dict
            suboptions:
              consecutive_5xx_errors:
                description: C(consecutive5xxErrors).
                type: int
              interval:
                description: C(interval), a length of time (C(10s)).
                type: str
              base_ejection_time:
                description: C(baseEjectionTime), a length of time (C(30s)).
                type: str
              max_ejection_percent:
                description: C(maxEjectionPercent).
                type: int
      no_problems:
        description: Also wait until RV(problems) is empty.
        type: bool
        default: false
  request_timeout:
    description: Seconds for each request to the API server, the exec, or istiod.
    type: float
    default: 10
  progress_interval:
    description: Seconds between two progress lines while waiting (in-process runs only). V(0) prints none.
    type: float
    default: 10
notes:
  - "Source C(istiod) needs the controller to reach istiod's port 15010. That port is plaintext and not
    authenticated; the module only reads from it."
seealso:
  - name: istioctl proxy-config
    description: Istio's command that reads the same configuration from a running Envoy.
    link: https://istio.io/latest/docs/reference/commands/istioctl/#istioctl-proxy-config
"""

EXAMPLES = r"""
- name: Every Bookinfo sidecar accepts only mutual TLS
  servicemesh.istio.proxy_config_info:
    namespace: default
    expect:
      inbound_mode: strict
    timeout: 30

- name: The 80/20 split of reviews reached productpage's proxy
  servicemesh.istio.proxy_config_info:
    namespace: default
    label_selectors: [app=productpage]
    hosts: [reviews]
    expect:
      routes:
        - host: reviews
          weights: {v1: 80, v2: 20}
      no_problems: true

- name: The ingress gateway serves the host on 80 and 443 with the certificate's Secret
  servicemesh.istio.proxy_config_info:
    namespace: istio-system
    label_selectors: [istio=ingressgateway]
    source: istiod
    expect:
      gateway_servers:
        - port: 80
          hosts: [bookinfo.example.com]
        - port: 443
          hosts: [bookinfo.example.com]
          tls_mode: simple
          credential_name: bookinfo-tls
  register: gateway

- name: Show what the gateway does
  ansible.builtin.debug:
    var: gateway.summary
"""

RETURN = r"""
proxies:
  description: One entry per pod read.
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
    kind:
      description: C(sidecar) or C(router) (a gateway).
      type: str
    source:
      description: Where the configuration came from, C(envoy) or C(istiod).
      type: str
    revision:
      description: The Istio revision the pod belongs to (C(default) for none).
      type: str
    note:
      description: Why another source than asked for was used.
      type: str
      returned: when it happened
    inbound:
      description: Per inbound port of a sidecar (its declared ports and container ports).
      type: list
      elements: dict
      sample: [{port: 9080, mode: strict, accepts: [mtls], chains: ["0.0.0.0_9080"], declared: true}]
    routes:
      description: Per virtual host of the outbound routes (restricted by O(hosts)).
      type: list
      elements: dict
      sample: [{route_config: "9080", name: "reviews.default.svc.cluster.local:9080",
                domains: ["reviews.default.svc.cluster.local", "reviews"],
                routes: [{name: "", match: "prefix /", destinations: [
                  {cluster: "outbound|9080|v1|reviews.default.svc.cluster.local",
                   host: reviews.default.svc.cluster.local, port: 9080, subset: v1, weight: 80},
                  {cluster: "outbound|9080|v2|reviews.default.svc.cluster.local",
                   host: reviews.default.svc.cluster.local, port: 9080, subset: v2, weight: 20}]}]}]
    clusters:
      description:
        - The clusters istiod pushed, with direction, port, subset, host and, for outbound clusters, the TLS they
          originate, their C(connection_pool) limits and their C(outlier_detection), keyed as a DestinationRule's
          C(trafficPolicy) names them in snake_case (Istio writes 4294967295 for no limit).
      type: list
      elements: dict
      sample: [{name: "outbound|9080|v1|reviews.default.svc.cluster.local", direction: outbound, port: 9080,
                subset: v1, host: reviews.default.svc.cluster.local, tls: istio_mutual,
                connection_pool: {max_connections: 100, http1_max_pending_requests: 10,
                                  http2_max_requests: 4294967295, max_retries: 4294967295},
                outlier_detection: {consecutive_5xx_errors: 5, interval: 10s, base_ejection_time: 30s,
                                    max_ejection_percent: 50}}]
    gateway_servers:
      description: Per filter chain of a gateway's listeners.
      type: list
      elements: dict
      sample: [{listener: "0.0.0.0_8443", port: 8443, service_port: 443, server_names: [bookinfo.example.com],
                tls_mode: simple, secrets: ["kubernetes://bookinfo-tls"], credential_names: [bookinfo-tls],
                route_config: "https.443.https.bookinfo-gateway.default", hosts: [bookinfo.example.com],
                destinations: [productpage.default.svc.cluster.local], https_redirect: false}]
    problems:
      description: Routes that send traffic to clusters istiod did not push.
      type: list
      elements: str
    counts:
      description: How many clusters, listeners and route configurations were read.
      type: dict
      sample: {clusters: 42, listeners: 30, routes: 12}
    raw:
      description: The configuration read, in Envoy's JSON form.
      type: dict
      returned: with O(include_raw)
problems:
  description: Every proxy's problems, prefixed with the pod.
  returned: always
  type: list
  elements: str
  sample: ["default/productpage-v1-5b9c8c8d9f-abcde: route default of reviews.default.svc.cluster.local:9080 (route config
           9080) sends 20% to cluster outbound|9080|v3|reviews.default.svc.cluster.local, which istiod did not push
           (no DestinationRule defines subset v3 of reviews.default.svc.cluster.local?)"]
summary:
  description: One line per proxy.
  returned: always
  type: list
  elements: str
  sample: ["default/reviews-v1-7d9c6b6d4f-abcde (sidecar, from istiod); inbound 9080 strict"]
skipped:
  description: Selected pods that were not read (no proxy, not running, or terminating).
  returned: always
  type: list
  elements: str
unmet:
  description: What in O(expect) (or O(min_pods)) was not met at the last attempt (empty on success).
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds spent.
  returned: always
  type: float
attempts:
  description: How many times the configuration was read.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _proxy_info
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC


def argument_spec():
    spec = dict(_proxy_info.PROXY_CONFIG_INFO_SPEC)
    spec.update(WAIT_ARGUMENT_SPEC)
    spec.update(_k8s.AUTH_ARG_SPEC)
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('name', 'label_selectors')])
    result = _proxy_info.run_proxy_config_info(module.params)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
