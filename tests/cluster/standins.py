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


# ---------------------------------------------------------------------------
# The ingress gateway, productpage and reviews of a traffic split (role canary)
# ---------------------------------------------------------------------------
STARS = {
    "v1": "<blockquote><p>An extremely entertaining play by Shakespeare.</p><small>Reviewer1</small></blockquote>",
    "v2": ("<blockquote><p>An extremely entertaining play by Shakespeare.</p><small>Reviewer1</small></blockquote>"
           '<font color="black"><span class="glyphicon glyphicon-star"></span></font>'),
    "v3": ("<blockquote><p>An extremely entertaining play by Shakespeare.</p><small>Reviewer1</small></blockquote>"
           '<font color="red"><span class="glyphicon glyphicon-star"></span></font>'),
}


class ProductpageSplitStandIn:
    """Plays the path ingress gateway -> productpage -> reviews for the canary
    role's measurement, on http://127.0.0.1:<port>/productpage, deciding each
    answer from what the role really applied and istiod really pushed.

    No Envoy and no Bookinfo container run on the test cluster. For every
    request this stand-in reads (at most every ``refresh`` seconds) the
    configuration istiod pushes to productpage's sidecar (xDS, as the pod's
    Envoy would receive it), finds the route of the reviews virtual host,
    picks one of its weighted clusters at random by the pushed weights (what
    Envoy does), refuses with 503 a cluster istiod did not push, resolves the
    cluster's subset through the DestinationRule in the API server (its
    labels) to the Ready reviews pods it selects, and answers the page
    those pods' version renders: v1 no stars, v2 black stars, v3 red stars.
    So a wrong weight or a subset whose labels select the wrong pods shows in
    the measurement exactly as it would on a real cluster. The evaluation of
    the raw configuration is written here, independently of the collection's
    summariser; only the xDS transport (plugins/module_utils/_xds.py) is shared."""

    def __init__(self, api_client, namespace: str, service: str = "reviews", caller: str = "app=productpage",
                 istio_namespace: str = "istio-system", cluster_domain: str = "cluster.local", refresh: float = 0.5):
        import random

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.service, self.caller = namespace, service, caller
        self.istio_namespace, self.cluster_domain, self.refresh = istio_namespace, cluster_domain, refresh
        self.random = random.Random(20261130)
        self.decisions: list[dict] = []
        self._cache: tuple[float, dict | None] = (0.0, None)
        self._lock = threading.Lock()
        self.server = None
        assert _xds.import_xds() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/productpage"

    def __enter__(self):
        import http.server

        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                status, body = standin.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _pushed(self) -> dict:
        with self._lock:
            at, config = self._cache
            if config is None or time.monotonic() - at > self.refresh:
                pods = [p for p in self.core.list_namespaced_pod(self.namespace, label_selector=self.caller).items
                        if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
                pod = self.core.api_client.sanitize_for_serialization(pods[0])
                node_id, metadata = _xds.node_identity(pod, self.cluster_domain, "")
                svc = self.core.read_namespaced_service("istiod", self.istio_namespace)
                config = _xds.fetch_proxy_config(f"{svc.spec.cluster_ip}:15010", node_id, metadata, timeout=10)
                self._cache = (time.monotonic(), config)
            return config

    def weighted_clusters(self, config: dict) -> list[tuple[str, int]]:
        """(cluster, weight) of the first route of the reviews virtual host istiod pushed."""
        fqdn = f"{self.service}.{self.namespace}.svc.{self.cluster_domain}"
        # productpage calls http://reviews:9080: the virtual host of that port (istiod also pushes one per
        # other HTTP port of the mesh, whose clusters do not exist for this Service).
        port = self.core.read_namespaced_service(self.service, self.namespace).spec.ports[0].port
        for route_config in config.get("routes") or []:
            for vhost in route_config.get("virtual_hosts") or []:
                if vhost.get("name") != f"{fqdn}:{port}":
                    continue
                for route in vhost.get("routes") or []:
                    action = route.get("route") or {}
                    if action.get("cluster"):
                        return [(action["cluster"], 100)]
                    clusters = (action.get("weighted_clusters") or {}).get("clusters") or []
                    if clusters:
                        out = []
                        for item in clusters:
                            weight = item.get("weight")
                            weight = weight.get("value") if isinstance(weight, dict) else weight
                            out.append((item["name"], int(weight or 0)))
                        return out
        return []

    def version_of(self, cluster: str) -> str | None:
        """The version of a Ready reviews pod the cluster's subset selects (DestinationRule labels)."""
        subset = cluster.split("|")[2]
        svc = self.core.read_namespaced_service(self.service, self.namespace)
        labels = dict(svc.spec.selector or {})
        if subset:
            rules = self.custom.list_namespaced_custom_object("networking.istio.io", "v1", self.namespace,
                                                              "destinationrules")["items"]
            found = [s for r in rules if r["spec"].get("host") in (self.service, f"{self.service}.{self.namespace}",
                                                                   cluster.split("|")[3])
                     for s in r["spec"].get("subsets") or [] if s.get("name") == subset]
            if not found:
                return None
            labels.update(found[0].get("labels") or {})
        pods = [p for p in self.core.list_namespaced_pod(self.namespace).items
                if p.status.phase == "Running" and all((p.metadata.labels or {}).get(k) == v for k, v in labels.items())
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        if not pods:
            return None
        return (self.random.choice(pods).metadata.labels or {}).get("version")

    def answer(self, path: str) -> tuple[int, bytes]:
        if not path.startswith("/productpage"):
            return 404, b"not found"
        config = self._pushed()
        pushed_clusters = {c.get("name") for c in config.get("clusters") or []}
        weighted = self.weighted_clusters(config)
        total = sum(w for _c, w in weighted)
        if not total:
            self.decisions.append({"status": 503, "why": "no route to reviews pushed"})
            return 503, b"no healthy upstream"
        pick = self.random.uniform(0, total)
        for cluster, weight in weighted:
            pick -= weight
            if pick <= 0 and weight:
                break
        if cluster not in pushed_clusters:
            self.decisions.append({"status": 200, "cluster": cluster, "why": "cluster not pushed: reviews unavailable"})
            return 200, b"<html><body>Error fetching product reviews!</body></html>"
        version = self.version_of(cluster)
        self.decisions.append({"status": 200, "cluster": cluster, "version": version})
        if version not in STARS:
            return 200, b"<html><body>Error fetching product reviews!</body></html>"
        return 200, f"<html><head><title>Simple Bookstore App</title></head><body>{STARS[version]}</body></html>".encode()


# ---------------------------------------------------------------------------
# Istio's standard metrics of a canary, for the real Prometheus (role canary)
# ---------------------------------------------------------------------------
BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class IstioMetricsSimulation:
    """A SIMULATION, not a stand-in that derives anything: a test exporter of
    istio_requests_total and istio_request_duration_milliseconds for the
    destination side (reporter="destination") of a Service's versions, with
    the request rate, 5xx ratio and latency the test sets per version.

    No Envoy runs on the test cluster, so nothing emits Istio's metrics and no
    traffic exists to be measured; the canary role's gates read what the real
    Prometheus (the addon's Deployment, run by the workload runner) scrapes
    from this exporter. It is exposed the way a pod is: a Pod annotated for
    the addon's kubernetes-pods job, its KWOK pod IP put on the namespace's
    loopback as /32 (what the workload runner does for the workloads it
    runs), and this exporter listening on <pod IP>:<port>."""

    PORT = 15098

    def __init__(self, api_client, namespace: str, service: str = "reviews"):
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.service = namespace, service
        self.name = "canary-metrics-simulation"
        self.series: dict[str, dict] = {}
        self.counts: dict[str, dict] = {}
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.pod_ip = ""
        self.server = None

    def set(self, version: str, rps: float, error_ratio: float = 0.0, latency_ms: float = 50.0) -> None:
        with self._lock:
            self._advance()
            self.series[version] = {"rps": rps, "error_ratio": error_ratio, "latency_ms": latency_ms}
            self.counts.setdefault(version, {"ok": 0.0, "5xx": 0.0, "sum": 0.0})

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        for version, s in self.series.items():
            n = s["rps"] * elapsed
            c = self.counts[version]
            c["5xx"] += n * s["error_ratio"]
            c["ok"] += n * (1 - s["error_ratio"])
            c["sum"] += n * s["latency_ms"]

    def exposition(self) -> str:
        with self._lock:
            self._advance()
            lines = ["# TYPE istio_requests_total counter", "# TYPE istio_request_duration_milliseconds histogram"]
            for version, c in self.counts.items():
                base = (f'reporter="destination",destination_service_namespace="{self.namespace}",'
                        f'destination_service_name="{self.service}",destination_version="{version}",'
                        f'destination_workload="{self.service}-{version}",destination_workload_namespace="{self.namespace}"')
                lines.append(f'istio_requests_total{{{base},response_code="200"}} {int(c["ok"])}')
                lines.append(f'istio_requests_total{{{base},response_code="503"}} {int(c["5xx"])}')
                total = int(c["ok"]) + int(c["5xx"])
                latency = self.series[version]["latency_ms"]
                for le in BUCKETS:
                    lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{le}"}} '
                                 f'{total if latency <= le else 0}')
                lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="+Inf"}} {total}')
                lines.append(f'istio_request_duration_milliseconds_sum{{{base}}} {c["sum"]:.1f}')
                lines.append(f'istio_request_duration_milliseconds_count{{{base}}} {total}')
            return "\n".join(lines) + "\n"

    def __enter__(self):
        import http.server
        import subprocess

        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app": self.name, "sidecar.istio.io/inject": "false"},
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(self.PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {"containers": [{"name": "exporter", "image": "registry.invalid/istio-metrics-simulation:1",
                                         "ports": [{"containerPort": self.PORT}]}]}}
        self.core.create_namespaced_pod(self.namespace, body)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.pod_ip:
            pod = self.core.read_namespaced_pod(self.name, self.namespace)
            self.pod_ip = pod.status.pod_ip or "" if pod.status.phase == "Running" else ""
            time.sleep(0.5)
        assert self.pod_ip, "the simulation's pod got no IP"
        subprocess.run(["ip", "addr", "add", f"{self.pod_ip}/32", "dev", "lo"], check=True)
        simulation = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                data = simulation.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((self.pod_ip, self.PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        import subprocess

        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.pod_ip:
            subprocess.run(["ip", "addr", "del", f"{self.pod_ip}/32", "dev", "lo"], check=False)
        try:
            self.core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=0)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
