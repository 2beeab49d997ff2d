"""Stand-ins for what cannot run on the local test cluster, answering from the
cluster's real configuration.

CurlClientStandIn plays the curl inside mtls_verify's client pods. No
container runs on the fake nodes, so no curl and no Envoy exist; what a real
client would get is decided from what istiod really pushes:

- the target: the client's TARGET_URL (the role's variable, in the pod's env)
  resolved through the real Service (name, namespace, port, targetPort) to a
  Ready pod it selects; a name that is no Service gives curl's exit 6, a port
  the Service does not have or no Ready endpoint gives exit 7;
- the server side: the inbound listener istiod pushes to that pod (its
  filter chains for the target port): plaintext is accepted only when a chain
  without a TLS transport socket serves the port, mutual TLS only when a chain
  requires a client certificate;
- the client side: a client without an istio-proxy container (the real
  injection webhook decides) speaks plaintext; one with a sidecar speaks what
  istiod pushes for its outbound cluster of the Service (mutual TLS when the
  cluster has a TLS transport socket, or Istio's auto-mTLS socket matches and
  the target has a sidecar; plaintext when a DestinationRule disables TLS).
  No outbound cluster pushed to the client: Envoy answers 503.
- a mismatch is a connection reset (curl exit 56), as Envoy does.

The outcome is written the way a real pod reports it: the client script's
summary line as termination message and its exit code, which the KWOK stage
hack/testcluster/kwok/smistio-pod-complete.yaml turns into the container's
terminated state (label smistio.test/complete, annotations
smistio.test/exit-code and smistio.test/termination-message). The evaluation
of the raw configuration here is written independently of the collection's
summariser (plugins/module_utils/_proxy_config.py); only the xDS transport and
the node identity (plugins/module_utils/_xds.py) are shared.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from kubernetes import client

from ansible_collections.servicemesh.istio.plugins.module_utils import _xds

CLIENT_SELECTOR = "app.kubernetes.io/name=mtls-verify-client"
TLS_TYPES = ("DownstreamTlsContext", "UpstreamTlsContext")


def _is_tls(socket: dict | None) -> bool:
    return ((socket or {}).get("typed_config") or {}).get("@type", "").endswith(TLS_TYPES)


def _requires_client_cert(socket: dict | None) -> bool:
    config = (socket or {}).get("typed_config") or {}
    value = config.get("require_client_certificate")
    return value is True or (isinstance(value, dict) and value.get("value") is True)


def _chain_names_for_port(matcher: dict | None, port: int) -> set[str]:
    """Every chain name the filter chain matcher can pick for this destination port."""
    names: set[str] = set()

    def walk(node):
        if not isinstance(node, dict):
            return
        action = (node.get("action") or {}).get("typed_config") or {}
        if isinstance(action.get("value"), str):
            names.add(action["value"])
        tree = node.get("matcher_tree")
        if tree:
            table = (tree.get("exact_match_map") or tree.get("prefix_match_map") or {}).get("map") or {}
            if "DestinationPortInput" in ((tree.get("input") or {}).get("typed_config") or {}).get("@type", ""):
                walk(table.get(str(port)) if str(port) in table else node.get("on_no_match"))
                return
            for branch in table.values():
                walk(branch)
        walk(node.get("matcher"))
        walk(node.get("on_no_match"))

    walk(matcher)
    return names


def inbound_acceptance(config: dict, port: int) -> tuple[bool, bool]:
    """(accepts plaintext, accepts mutual TLS) of the pushed inbound listener for a port."""
    listener = next((item for item in config["listeners"] if item.get("name") == "virtualInbound"), None)
    if listener is None:
        return False, False
    chains = listener.get("filter_chains") or []
    if listener.get("filter_chain_matcher"):
        wanted = _chain_names_for_port(listener["filter_chain_matcher"], port)
        chains = [c for c in chains if c.get("name") in wanted]
    else:
        exact = [c for c in chains if (c.get("filter_chain_match") or {}).get("destination_port") == port]
        chains = exact or [c for c in chains if not (c.get("filter_chain_match") or {}).get("destination_port")]
    chains = [c for c in chains if c.get("filters") and "blackhole" not in (c.get("name") or "")]
    plaintext = any(not _is_tls(c.get("transport_socket")) for c in chains)
    mtls = any(_is_tls(c.get("transport_socket")) and _requires_client_cert(c.get("transport_socket"))
               for c in chains)
    return plaintext, mtls


def outbound_speaks_mtls(config: dict, cluster_name: str, target_has_sidecar: bool) -> bool | None:
    """Whether the client's proxy originates mutual TLS to the cluster; None: no such cluster."""
    cluster = next((c for c in config["clusters"] if c.get("name") == cluster_name), None)
    if cluster is None:
        return None
    if _is_tls(cluster.get("transport_socket")):
        return True
    matches = cluster.get("transport_socket_matches") or []
    for match in matches:
        wants_istio = ((match.get("match") or {}).get("tlsMode") == "istio")
        if wants_istio and target_has_sidecar and _is_tls(match.get("transport_socket")):
            return True
    return False


class CurlClientStandIn:
    """Watches mtls_verify's client pods in a namespace and ends each one with
    the outcome a real curl would have had (see the module docstring)."""

    def __init__(self, api_client, namespace: str, istio_namespace: str = "istio-system",
                 cluster_domain: str = "cluster.local"):
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.istio_namespace = istio_namespace
        self.cluster_domain = cluster_domain
        self.decisions: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._seen: set[str] = set()
        self.errors: list[str] = []
        # Client pods (by name) the stand-in leaves running, as a hung curl would:
        # the one fault that is injected rather than derived.
        self.hang: set[str] = set()
        assert _xds.import_xds() is None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self):
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=CLIENT_SELECTOR).items
                for pod in pods:
                    if pod.metadata.uid in self._seen or pod.status.phase != "Running" \
                            or pod.metadata.deletion_timestamp or pod.metadata.name in self.hang:
                        continue
                    self._seen.add(pod.metadata.uid)
                    self._answer(pod)
            except Exception as exc:  # noqa: BLE001  a failed poll is retried, and recorded for the test
                self.errors.append(repr(exc))
            self._stop.wait(0.3)

    def _pod_dict(self, pod) -> dict:
        return self.core.api_client.sanitize_for_serialization(pod)

    def _istiod(self, pod: dict) -> str:
        revision = ((pod["metadata"].get("labels") or {}).get("istio.io/rev") or "")
        name = "istiod" if revision in ("", "default") else f"istiod-{revision}"
        svc = self.core.read_namespaced_service(name, self.istio_namespace)
        return f"{svc.spec.cluster_ip}:15010"

    def pushed(self, pod: dict) -> dict:
        node_id, metadata = _xds.node_identity(pod, self.cluster_domain, "")
        return _xds.fetch_proxy_config(self._istiod(pod), node_id, metadata, timeout=10)

    def outcome(self, pod: dict) -> tuple[int, str, str]:
        """(curl exit code, http code, curl error line) for this client pod."""
        env = {e["name"]: e.get("value", "") for c in pod["spec"]["containers"] if c["name"] == "client"
               for e in c.get("env") or []}
        url = urlsplit(env["TARGET_URL"])
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
        labels = host.split(".")
        svc_name = labels[0]
        svc_ns = labels[1] if len(labels) > 1 and labels[1] != "svc" else pod["metadata"]["namespace"]
        try:
            svc = self.core.read_namespaced_service(svc_name, svc_ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return 6, "000", f"curl: (6) Could not resolve host: {host}"
            raise
        svc_port = next((p for p in svc.spec.ports or [] if p.port == port), None)
        if svc_port is None:
            return 7, "000", f"curl: (7) Failed to connect to {host} port {port}"
        selector = ",".join(f"{k}={v}" for k, v in (svc.spec.selector or {}).items())
        targets = [p for p in self.core.list_namespaced_pod(svc_ns, label_selector=selector).items
                   if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        client_has_sidecar = _xds.proxy_container(pod) is not None
        if not targets:
            if client_has_sidecar:
                return 0, "503", ""
            return 7, "000", f"curl: (7) Failed to connect to {host} port {port}"
        target = self._pod_dict(targets[0])
        target_port = svc_port.target_port if isinstance(svc_port.target_port, int) else port
        target_has_sidecar = _xds.proxy_container(target) is not None
        plaintext_ok, mtls_ok = (True, False) if not target_has_sidecar else \
            inbound_acceptance(self.pushed(target), target_port)
        if client_has_sidecar:
            fqdn = f"{svc_name}.{svc_ns}.svc.{self.cluster_domain}"
            speaks_mtls = outbound_speaks_mtls(self.pushed(pod), f"outbound|{port}||{fqdn}", target_has_sidecar)
            if speaks_mtls is None:
                return 0, "503", ""
            accepted = mtls_ok if speaks_mtls else plaintext_ok
        else:
            accepted = plaintext_ok
        if accepted:
            return 0, "200", ""
        return 56, "000", "curl: (56) Recv failure: Connection reset by peer"

    def _answer(self, pod_obj):
        pod = self._pod_dict(pod_obj)
        curl_exit, http_code, error = self.outcome(pod)
        exit_code = curl_exit if curl_exit else (0 if http_code == "200" else 100)
        env = {e["name"]: e.get("value", "") for c in pod["spec"]["containers"] if c["name"] == "client"
               for e in c.get("env") or []}
        summary = (f"client={env.get('CLIENT')} url={env.get('TARGET_URL')} curl_exit={curl_exit} "
                   f"http_code={http_code} exit={exit_code}" + (f" error={error}" if error else ""))
        self.decisions.append({"pod": pod["metadata"]["name"], "exit": exit_code, "summary": summary,
                               "at": time.monotonic()})
        self.core.patch_namespaced_pod(pod["metadata"]["name"], pod["metadata"]["namespace"], {
            "metadata": {"labels": {"smistio.test/complete": "true"},
                         "annotations": {"smistio.test/exit-code": str(exit_code),
                                         "smistio.test/termination-message": summary}}})
