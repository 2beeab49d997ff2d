"""Stand-in for the Envoy of Istio's ingress gateways, answering from the real configuration.

Part of the local test cluster: no container runs (KWOK), so no Envoy serves
the gateway Service's LoadBalancer IP. This process does, for every Service of
type LoadBalancer that has an address and selects the pods of an Istio gateway
(pods whose container image is Istio's ``proxyv2``, as istiod's injection
makes the gateway chart's ``image: auto``): it listens on
``<LB IP>:<port>`` for each Service port that a Gateway server uses (80, 443),
and decides every answer from what is in the API server at that moment, as
istiod would push it to Envoy (the subset Bookinfo and cert-manager need):

- Gateways (any namespace) whose ``selector`` matches the gateway pods'
  labels; their servers for that port whose ``hosts`` match the request's Host
  / SNI (``host``, ``ns/host``, ``*/host``, ``*.suffix``, ``*``);
- port 80: ``tls.httpsRedirect`` answers 301 to https; otherwise the HTTP
  routes of the VirtualServices bound to such a Gateway (``gateways`` as
  ``name`` in the VirtualService's namespace or ``ns/name``) for the host, in
  order, matching ``uri`` exact/prefix/regex and ``port``: ``redirect``
  answers ``redirectCode`` (default 301) with the rewritten Location; ``route``
  goes to the destination Service (a short name is in the VirtualService's
  namespace, ``<svc>.<ns>.svc.cluster.local`` in ``<ns>``) at the destination
  port (or its only port): no such Service or port: 503 ``no healthy
  upstream``; a Service with no Ready pod: 503; else the upstream answers:
  when a process listens on the Service's ClusterIP and port (one the
  workload runner runs: Prometheus, the Grafana and Kiali stand-ins...), the
  request goes to it (method, path, Host, Authorization, Cookie) and its
  status, body and Location/Set-Cookie/WWW-Authenticate headers come back;
  otherwise the upstream cannot run: for Bookinfo's productpage (the
  Service's pods run the ``examples-bookinfo-productpage`` image) the answer
  is a page with Bookinfo's title, for anything else a page naming the
  Service;
- before any route, the AuthorizationPolicies that apply to the gateway's
  pods (its namespace and the root namespace istio-system; ``selector``
  matching the pods' labels, or none): a DENY rule that matches answers 403
  ``RBAC: access denied``; if ALLOW policies apply and none of their rules
  matches, 403 too. A rule matches on ``to.operation`` hosts/notHosts,
  ports/notPorts, methods/notMethods, paths/notPaths and ``from.source``
  remoteIpBlocks/notRemoteIpBlocks and ipBlocks/notIpBlocks (the client's
  address: no proxy in front), requestPrincipals/notRequestPrincipals and
  principals/notPrincipals (this stand-in validates no JWT and sees no mTLS
  peer: a request never has a principal). A policy using anything else
  (``when``, CUSTOM, ``targetRefs``...) is not evaluated: the request gets
  503 and the record says which field, rather than a guess;
- port 80, Ingresses (cert-manager's HTTP-01 solver): when the mesh ConfigMap
  of the revision (``istio``) has ingressControllerMode not OFF and its
  ingressSelector is this gateway's ``istio`` label, Ingresses of its
  ingressClass (``spec.ingressClassName`` or the
  ``kubernetes.io/ingress.class`` annotation) route too; the backend Service's
  pods, when they are cert-manager's acmesolver (its ``--domain``, ``--token``
  and ``--key`` arguments), answer what acmesolver answers: the key for the
  token of its domain, 404 otherwise;
- port 443: the server for the SNI; ``tls.mode`` SIMPLE (MUTUAL would ask the
  client for a certificate, which is refused here; PASSTHROUGH and
  ISTIO_MUTUAL are not terminated: handshake refused); the certificate is the
  Secret named by ``credentialName`` in the gateway Service's namespace (where
  istiod reads it), ``tls.crt``/``tls.key``; missing: handshake refused.
  Requests over TLS route as on port 80 (VirtualService rules for port 443).

Every request and handshake is appended to
``$SMI_STATE/gateway-standin/<ns>.<svc>.jsonl`` (time, port, host/SNI, path,
status, why), which tests read to show what was decided and why.

The same process stands in for the cloud's load balancer of every other
Service of type LoadBalancer that has an address (the observability addons'
with ``observability_exposure: loadbalancer``): a layer-4 relay, as a cloud
load balancer is, from ``<LB IP>:<port>`` for each TCP port of the Service
to the Service's ClusterIP and port, where the workload runner's Service-port
forward reaches the real Prometheus or an addon stand-in. A connection whose
source is outside the Service's ``spec.loadBalancerSourceRanges`` (none: every
source) is closed at once with a reset and nothing relayed (a cloud load
balancer drops such packets, which the client sees as a timeout; the reset
says the same, sooner). The ranges, ports and addresses are read from the
Service at every poll, so a change is served within ``POLL_S``. Each
connection is appended to ``$SMI_STATE/gateway-standin/lb.<ns>.<svc>.jsonl``
(time, port, client, allowed, why).

Usage: gateway_standin.py KUBECONFIG STATE_DIR
"""

from __future__ import annotations

import base64
import http.client
import http.server
import ipaddress
import json
import re
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from kubernetes import client, config

from workload_runner import Forward

POLL_S = 2.0
PROXY_IMAGE = "proxyv2"
PRODUCTPAGE_IMAGE = "examples-bookinfo-productpage"
BOOKINFO_HTML = (b"<!DOCTYPE html><html><head><title>Simple Bookstore App</title></head>"
                 b"<body>gateway stand-in: Bookinfo productpage</body></html>")
ISTIO = ("networking.istio.io", "v1")
SECURITY = ("security.istio.io", "v1")
ROOT_NAMESPACE = "istio-system"


class NotEvaluated(Exception):
    """A policy uses what the stand-in does not evaluate."""


def _in_blocks(ip: str, blocks: list[str]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in ipaddress.ip_network(b, strict=False) for b in blocks)


def _str_match(pattern: str, value: str) -> bool:
    """Istio's string match: exact, prefix 'abc*', suffix '*abc' or presence '*'."""
    if pattern == "*":
        return bool(value)
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _negated(field: str) -> str:
    return "not" + field[0].upper() + field[1:]


def _holds(spec: dict, field: str, matches) -> bool:
    """``field`` (any of its values matches) and ``not<Field>`` (none does), each when present."""
    return ((field not in spec or any(matches(v) for v in spec[field]))
            and not any(matches(v) for v in spec.get(_negated(field), [])))


SOURCE = ("remoteIpBlocks", "ipBlocks", "requestPrincipals", "principals")
OPERATION = ("hosts", "ports", "methods", "paths")
SOURCE_FIELDS = {*SOURCE, *map(_negated, SOURCE)}
OPERATION_FIELDS = {*OPERATION, *map(_negated, OPERATION)}


def rule_matches(rule: dict, request: dict, policy: str) -> bool:
    """Does an AuthorizationPolicy rule match the request? Every field of a
    source or an operation must hold; any source and any operation will do."""
    unknown = sorted(set(rule) - {"from", "to"})
    for entry in rule.get("from") or []:
        unknown += sorted(set(entry.get("source") or {}) - SOURCE_FIELDS)
    for entry in rule.get("to") or []:
        unknown += sorted(set(entry.get("operation") or {}) - OPERATION_FIELDS)
    if unknown:
        raise NotEvaluated(f"AuthorizationPolicy {policy}: {unknown} is not evaluated by the stand-in")
    ip = request["client_ip"]  # no proxy in front: the remote and the direct peer are the client
    principal = ""  # no JWT validated, no mTLS peer
    host = (request["headers"].get("Host") or request["host"]).lower()
    path = request["path"].split("?")[0]

    def source_ok(src: dict) -> bool:
        return (_holds(src, "remoteIpBlocks", lambda b: _in_blocks(ip, [b]))
                and _holds(src, "ipBlocks", lambda b: _in_blocks(ip, [b]))
                and _holds(src, "requestPrincipals", lambda p: _str_match(p, principal))
                and _holds(src, "principals", lambda p: _str_match(p, principal)))

    def operation_ok(op: dict) -> bool:
        return (_holds(op, "hosts", lambda h: _str_match(h.lower(), host))
                and _holds(op, "ports", lambda p: str(p) == str(request["port"]))
                and _holds(op, "methods", lambda m: _str_match(m, request["method"]))
                and _holds(op, "paths", lambda p: _str_match(p, path)))

    sources = [e.get("source") or {} for e in rule.get("from") or []]
    operations = [e.get("operation") or {} for e in rule.get("to") or []]
    return (not sources or any(source_ok(s) for s in sources)) and \
        (not operations or any(operation_ok(o) for o in operations))


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def host_matches(pattern: str, host: str) -> bool:
    pattern = pattern.split("/", 1)[1] if "/" in pattern else pattern
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


class Gateway:
    """One gateway Service and what it serves."""

    def __init__(self, api: client.ApiClient, svc, pod_labels: dict, record: Path):
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.net = client.NetworkingV1Api(api)
        self.namespace, self.name = svc.metadata.namespace, svc.metadata.name
        self.pod_labels = pod_labels
        self.address = svc.status.load_balancer.ingress[0].ip
        self.ports = sorted({p.port for p in svc.spec.ports or []} & {80, 443})
        self.record_file = record
        self.lock = threading.Lock()
        self.servers: list[http.server.ThreadingHTTPServer] = []
        self.tmp = tempfile.TemporaryDirectory(prefix="gateway-standin-")

    def record(self, **event) -> None:
        event["t"] = round(time.time(), 3)
        with self.lock, self.record_file.open("a") as out:
            out.write(json.dumps(event) + "\n")

    # -- configuration --------------------------------------------------------
    def gateways(self) -> list[dict]:
        items = self.custom.list_cluster_custom_object(*ISTIO, "gateways")["items"]
        # Istio keeps the oldest Gateway's server when two claim a host and port.
        items.sort(key=lambda g: (g["metadata"]["creationTimestamp"], g["metadata"]["namespace"], g["metadata"]["name"]))
        return [g for g in items if g["spec"].get("selector")
                and all(self.pod_labels.get(k) == v for k, v in g["spec"]["selector"].items())]

    def servers_for(self, port: int, host: str) -> list[tuple[dict, dict]]:
        return [(g, s) for g in self.gateways() for s in g["spec"].get("servers", [])
                if s["port"]["number"] == port and any(host_matches(h, host) for h in s.get("hosts", []))]

    def vs_rule(self, bound: set[str], host: str, path: str, port: int) -> tuple[dict, dict] | None:
        items = self.custom.list_cluster_custom_object(*ISTIO, "virtualservices")["items"]
        # Two VirtualServices for one host on one gateway: the oldest wins, as in Istio.
        items.sort(key=lambda v: (v["metadata"]["creationTimestamp"], v["metadata"]["namespace"], v["metadata"]["name"]))
        for vs in items:
            ns = vs["metadata"]["namespace"]
            gws = {g if "/" in g else f"{ns}/{g}" for g in vs["spec"].get("gateways", [])}
            if not gws & bound or not any(host_matches(h, host) for h in vs["spec"].get("hosts", [])):
                continue
            for rule in vs["spec"].get("http", []):
                for match in rule.get("match") or [{}]:
                    if "port" in match and match["port"] != port:
                        continue
                    uri = match.get("uri", {})
                    if "exact" in uri and path.split("?")[0] != uri["exact"]:
                        continue
                    if "prefix" in uri and not path.startswith(uri["prefix"]):
                        continue
                    if "regex" in uri and not re.fullmatch(uri["regex"], path.split("?")[0]):
                        continue
                    return vs, rule
        return None

    def mesh(self) -> dict:
        try:
            cm = self.core.read_namespaced_config_map("istio", "istio-system")
        except client.ApiException:
            return {}
        return yaml.safe_load((cm.data or {}).get("mesh", "")) or {}

    def ingress_backend(self, host: str, path: str) -> tuple[str, str, object] | None:
        """(namespace, Service, port) of an Ingress istiod would serve on this gateway."""
        mesh = self.mesh()
        if mesh.get("ingressControllerMode", "STRICT") == "OFF":
            return None
        if mesh.get("ingressSelector", "ingressgateway") != self.pod_labels.get("istio"):
            return None
        klass = mesh.get("ingressClass", "istio")
        for ing in self.net.list_ingress_for_all_namespaces().items:
            ann = ing.metadata.annotations or {}
            if (ing.spec.ingress_class_name or ann.get("kubernetes.io/ingress.class")) != klass:
                continue
            for rule in ing.spec.rules or []:
                if rule.host and rule.host != host or not rule.http:
                    continue
                for p in rule.http.paths:
                    ok = path.split("?")[0] == p.path if p.path_type == "Exact" else path.startswith(p.path or "/")
                    if ok and p.backend.service:
                        port = p.backend.service.port
                        return ing.metadata.namespace, p.backend.service.name, port.number or port.name
        return None

    # -- authorization ----------------------------------------------------------
    def policy_objects(self) -> list[dict]:
        """AuthorizationPolicies of the gateway's namespace and the root namespace."""
        found = []
        for ns in dict.fromkeys([self.namespace, ROOT_NAMESPACE]):
            found += self.custom.list_namespaced_custom_object(*SECURITY, ns, "authorizationpolicies")["items"]
        return found

    def policies(self) -> list[dict]:
        """Those that apply to this gateway's pods (no selector: every workload of the namespace)."""
        return [p for p in self.policy_objects() if all(self.pod_labels.get(k) == v for k, v in
                ((p.get("spec") or {}).get("selector") or {}).get("matchLabels", {}).items())]

    def authorize(self, request: dict) -> tuple[bool, str]:
        """(allowed, why) for request {host, port, method, path, client_ip}, as
        Envoy's RBAC filter would decide from the policies."""
        allow_rules, allow_policies = [], []
        for pol in self.policies():
            spec, name = pol.get("spec") or {}, f"{pol['metadata']['namespace']}/{pol['metadata']['name']}"
            unknown = sorted(set(spec) - {"selector", "action", "rules"})
            action = spec.get("action", "ALLOW")
            if unknown or action not in ("ALLOW", "DENY"):
                raise NotEvaluated(f"AuthorizationPolicy {name}: {unknown or action} is not evaluated by the stand-in")
            rules = spec.get("rules") or []
            if action == "DENY":
                for rule in rules:
                    if rule_matches(rule, request, name):
                        return False, f"denied by AuthorizationPolicy {name} (DENY)"
            else:
                allow_policies.append(name)
                allow_rules += [(rule, name) for rule in rules]
        if allow_policies:
            for rule, name in allow_rules:
                if rule_matches(rule, request, name):
                    return True, f"allowed by AuthorizationPolicy {name}"
            return False, f"no rule of the ALLOW AuthorizationPolicies {allow_policies} matches"
        return True, ""

    # -- upstreams --------------------------------------------------------------
    def forward(self, address: str, port: int, request: dict) -> tuple[int, bytes, str, dict] | None:
        """The request relayed to a process listening on address:port; None if nothing listens."""
        conn = http.client.HTTPConnection(address, port, timeout=10)
        try:
            conn.connect()
        except OSError:
            return None
        try:
            headers = {k: v for k, v in (request.get("headers") or {}).items()
                       if k.lower() in ("host", "authorization", "cookie", "accept", "content-type")}
            conn.request(request.get("method", "GET"), request["path"], body=request.get("body"), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            kept = {k: v for k, v in resp.getheaders()
                    if k.lower() in ("location", "content-type", "set-cookie", "www-authenticate")}
            return resp.status, body, f"{address}:{port} answered", kept
        finally:
            conn.close()

    def upstream(self, namespace: str, service: str, port, host: str, path: str,
                 request: dict) -> tuple[int, bytes, str, dict]:
        try:
            svc = self.core.read_namespaced_service(service, namespace)
        except client.ApiException:
            return 503, b"no healthy upstream", f"no Service {namespace}/{service}", {}
        ports = svc.spec.ports or []
        if port is None and len(ports) == 1:
            port = ports[0].port
        if not any(port in (p.port, p.name) for p in ports):
            return 503, b"no healthy upstream", f"Service {namespace}/{service} has no port {port}", {}
        selector = ",".join(f"{k}={v}" for k, v in (svc.spec.selector or {}).items())
        pods = [p for p in self.core.list_namespaced_pod(namespace, label_selector=selector).items
                if selector and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]
        if not pods:
            return 503, b"no healthy upstream", f"Service {namespace}/{service} has no Ready pod", {}
        containers = pods[0].spec.containers or []
        if any(PRODUCTPAGE_IMAGE in (c.image or "") for c in containers):
            return 200, BOOKINFO_HTML, f"{namespace}/{service}:{port} (productpage pods)", {}
        args = {}
        for c in containers:
            args.update(a.lstrip("-").split("=", 1) for a in c.args or [] if "=" in a)
        if {"domain", "token", "key"} <= set(args):  # cert-manager's acmesolver
            token = path.split("?")[0].rsplit("/", 1)[-1]
            if host == args["domain"] and token == args["token"]:
                return 200, args["key"].encode(), f"{namespace}/{service}: acmesolver for {args['domain']}", {}
            return 404, b"", f"{namespace}/{service}: acmesolver for {args['domain']}, token {args['token']}", {}
        number = next((p.port for p in ports if port in (p.port, p.name)), port)
        relayed = self.forward(svc.spec.cluster_ip, number, request)
        if relayed is not None:
            status, body, why, headers = relayed
            return status, body, f"{namespace}/{service}:{number}: {why}", headers
        return 200, f"gateway stand-in: upstream {namespace}/{service}".encode(), \
            f"{namespace}/{service}:{port} (nothing listens on {svc.spec.cluster_ip}:{number}: a page naming it)", {}

    def answer(self, port: int, host: str, path: str, request: dict | None = None) -> tuple[int, bytes, dict, str]:
        request = dict(request or {}, host=host, port=port, path=path)
        request.setdefault("method", "GET")
        request.setdefault("headers", {"Host": host})
        servers = self.servers_for(port, host)
        if servers and request.get("client_ip"):
            try:
                allowed, why = self.authorize(request)
            except NotEvaluated as exc:
                return 503, b"", {}, str(exc)
            if not allowed:
                return 403, b"RBAC: access denied", {"Content-Type": "text/plain"}, why
        if port == 80 and any(s.get("tls", {}).get("httpsRedirect") for _g, s in servers):
            g = next(g for g, s in servers if s.get("tls", {}).get("httpsRedirect"))
            return 301, b"", {"Location": f"https://{host}{path}"}, \
                f"httpsRedirect on {g['metadata']['namespace']}/{g['metadata']['name']}"
        bound = {f"{g['metadata']['namespace']}/{g['metadata']['name']}" for g, _s in servers}
        found = self.vs_rule(bound, host, path, port) if bound else None
        if found:
            vs, rule = found
            where = f"VirtualService {vs['metadata']['namespace']}/{vs['metadata']['name']} rule {rule.get('name', '')}"
            if "redirect" in rule:
                r = rule["redirect"]
                code = r.get("redirectCode", 301)
                scheme = r.get("scheme", "https" if port == 443 else "http")
                location = f"{scheme}://{r.get('authority', host)}{r.get('uri', path)}"
                if "port" in r:
                    location = f"{scheme}://{r.get('authority', host)}:{r['port']}{r.get('uri', path)}"
                return code, b"", {"Location": location}, where
            dest = (rule.get("route") or [{}])[0].get("destination", {})
            dhost = dest.get("host", "")
            parts = dhost.split(".")
            ns = parts[1] if len(parts) > 1 else vs["metadata"]["namespace"]
            status, body, why, headers = self.upstream(ns, parts[0], (dest.get("port") or {}).get("number"),
                                                       host, path, request)
            return status, body, {"Content-Type": "text/html", **headers}, f"{where} -> {why}"
        if port == 80:
            backend = self.ingress_backend(host, path)
            if backend:
                status, body, why, headers = self.upstream(*backend, host, path, request)
                return status, body, {"Content-Type": "text/plain", **headers}, f"Ingress -> {why}"
        return 404, b"", {}, ("no Gateway server for this host and port" if not bound
                              else f"no route of a VirtualService bound to {sorted(bound)}")

    def tls_context(self, sni: str) -> tuple[ssl.SSLContext | None, str]:
        servers = self.servers_for(443, sni)
        if not servers:
            return None, "no Gateway server on 443 for this SNI"
        g, server = servers[0]
        tls = server.get("tls") or {}
        mode = tls.get("mode", "")
        if mode != "SIMPLE":
            return None, f"tls.mode {mode or 'unset'} on {g['metadata']['namespace']}/{g['metadata']['name']} is not served here"
        name = tls.get("credentialName", "")
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
            crt, key = base64.b64decode(secret.data["tls.crt"]), base64.b64decode(secret.data["tls.key"])
        except (client.ApiException, KeyError, TypeError):
            return None, f"credentialName {name!r}: no such Secret with tls.crt and tls.key in {self.namespace}"
        d = Path(tempfile.mkdtemp(dir=self.tmp.name))
        (d / "crt").write_bytes(crt)
        (d / "key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(d / "crt", d / "key")
        except ssl.SSLError as exc:
            return None, f"credentialName {name!r}: Secret {self.namespace}/{name} does not hold a usable pair ({exc})"
        finally:
            (d / "key").unlink()
            (d / "crt").unlink()
            d.rmdir()
        return ctx, f"Secret {self.namespace}/{name}"

    # -- serving ----------------------------------------------------------------
    def start(self) -> None:
        gw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self):
                if isinstance(self.connection, ssl.SSLSocket):
                    try:
                        self.connection.do_handshake()
                    except (ssl.SSLError, OSError):
                        return
                super().handle()

            def do_GET(self):  # noqa: N802 - http.server's naming
                port = self.server.server_address[1]
                host = (self.headers.get("Host") or "").split(":")[0]
                length = int(self.headers.get("Content-Length") or 0)
                request = {"method": self.command, "client_ip": self.client_address[0],
                           "headers": dict(self.headers.items()), "body": self.rfile.read(length) if length else None}
                try:
                    status, body, headers, why = gw.answer(port, host, self.path, request)
                except Exception as exc:  # noqa: BLE001 - the stand-in answers like Envoy would
                    status, body, headers, why = 503, b"", {}, f"stand-in error: {exc}"
                gw.record(port=port, host=host, path=self.path, method=self.command, client=self.client_address[0],
                          status=status, why=why)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815
            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        class TLSServer(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                sock.settimeout(10)
                return base.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        def pick(sslobj, server_name, _ctx):
            ctx, why = gw.tls_context(server_name or "")
            gw.record(port=443, sni=server_name or "", handshake=ctx is not None, why=why)
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sslobj.context = ctx
            return None

        base.sni_callback = pick
        for port in self.ports:
            cls = TLSServer if port == 443 else http.server.ThreadingHTTPServer
            cls.daemon_threads = True
            srv = cls((self.address, port), Handler)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers.append(srv)
        log(f"serving {self.namespace}/{self.name} on {self.address} ports {self.ports} (record: {self.record_file})")

    def stop(self) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        self.tmp.cleanup()
        log(f"stopped serving {self.namespace}/{self.name} on {self.address}")


class LoadBalancerPort(Forward):
    """One port of a cloud load balancer: relays to the Service's ClusterIP
    and port the connections whose source is inside ``ranges``, resets the
    others (see the module docstring)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], ranges: list[str], record: Path):
        self.ranges = ranges or ["0.0.0.0/0", "::/0"]
        self.record_file = record
        super().__init__(listen, target)

    def _relay(self, conn: socket.socket) -> None:
        peer = conn.getpeername()[0]
        allowed = _in_blocks(peer, self.ranges)
        if allowed:
            why = f"{peer} inside loadBalancerSourceRanges {self.ranges}: relayed to {self.target[0]}:{self.target[1]}"
        else:
            why = f"{peer} outside loadBalancerSourceRanges {self.ranges}: dropped (reset)"
        event = {"t": round(time.time(), 3), "port": self.listen[1], "client": peer, "allowed": allowed, "why": why}
        with self.record_file.open("a") as out:
            out.write(json.dumps(event) + "\n")
        if not allowed:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        super()._relay(conn)


class LoadBalancer:
    """The cloud's load balancer of one Service: a LoadBalancerPort per TCP port."""

    def __init__(self, svc, record: Path):
        self.namespace, self.name = svc.metadata.namespace, svc.metadata.name
        self.address = svc.status.load_balancer.ingress[0].ip
        self.ranges = list(svc.spec.load_balancer_source_ranges or [])
        self.targets = [(p.port, svc.spec.cluster_ip) for p in svc.spec.ports or [] if (p.protocol or "TCP") == "TCP"]
        self.record_file = record
        self.ports: list[LoadBalancerPort] = []

    def start(self) -> None:
        for port, cluster_ip in self.targets:
            self.ports.append(LoadBalancerPort((self.address, port), (cluster_ip, port), self.ranges,
                                               self.record_file))
        log(f"load balancer for {self.namespace}/{self.name} on {self.address} ports {[port for port, _ip in self.targets]}, "
            f"source ranges {self.ranges or 'any'} (record: {self.record_file})")

    def stop(self) -> None:
        for port in self.ports:
            port.close()
        log(f"stopped the load balancer of {self.namespace}/{self.name} on {self.address}")


def load_balancer_services(core: client.CoreV1Api, gateways: dict[tuple, tuple]) -> dict[tuple, object]:
    """Services of type LoadBalancer with an address, but the gateways', by
    what their load balancer serves (address, ports, source ranges, ClusterIP)."""
    served = {(k[0], k[1]) for k in gateways}
    out = {}
    for svc in core.list_service_for_all_namespaces().items:
        ingress = (svc.status.load_balancer and svc.status.load_balancer.ingress) or []
        if svc.spec.type != "LoadBalancer" or not ingress or not ingress[0].ip:
            continue
        if (svc.metadata.namespace, svc.metadata.name) in served or svc.spec.cluster_ip in (None, "", "None"):
            continue
        key = (svc.metadata.namespace, svc.metadata.name, ingress[0].ip, svc.spec.cluster_ip,
               tuple(sorted(p.port for p in svc.spec.ports or [])),
               tuple(sorted(svc.spec.load_balancer_source_ranges or [])))
        out[key] = svc
    return out


def gateway_services(core: client.CoreV1Api) -> dict[tuple, tuple]:
    out = {}
    for svc in core.list_service_for_all_namespaces().items:
        ingress = (svc.status.load_balancer and svc.status.load_balancer.ingress) or []
        if svc.spec.type != "LoadBalancer" or not ingress or not ingress[0].ip or not svc.spec.selector:
            continue
        selector = ",".join(f"{k}={v}" for k, v in svc.spec.selector.items())
        for pod in core.list_namespaced_pod(svc.metadata.namespace, label_selector=selector).items:
            # The gateway chart's image is "auto": istiod's injection puts proxyv2 in.
            images = [c.image or "" for c in pod.spec.containers or []]
            if any(PROXY_IMAGE in i for i in images):
                ports = tuple(sorted(p.port for p in svc.spec.ports or []))
                out[(svc.metadata.namespace, svc.metadata.name, ingress[0].ip, ports)] = (svc, pod.metadata.labels or {})
                break
    return out


def converge(running: dict, want: dict, make) -> None:
    """Stop what is no longer wanted, start what is wanted and not running
    (``make(key, value)``: a Gateway or a LoadBalancer); one that cannot
    listen yet is tried again at the next poll."""
    for key in [k for k in running if k not in want]:
        running.pop(key).stop()
    for key, value in want.items():
        if key in running:
            continue
        served = make(key, value)
        try:
            served.start()
        except OSError as exc:
            log(f"cannot serve {key[0]}/{key[1]} on {key[2]}: {exc}; retrying")
            served.stop()
            continue
        running[key] = served


def main() -> int:
    kubeconfig, state = sys.argv[1], Path(sys.argv[2])
    config.load_kube_config(config_file=kubeconfig)
    api = client.ApiClient()
    core = client.CoreV1Api(api)
    (state / "gateway-standin").mkdir(parents=True, exist_ok=True)
    running: dict[tuple, Gateway] = {}
    balancers: dict[tuple, LoadBalancer] = {}
    last_error = ""
    log("gateway stand-in: answering for Istio gateway Services from their Gateways, VirtualServices, Ingresses, "
        "Secrets; load balancers for the other LoadBalancer Services")
    while True:
        try:
            want = gateway_services(core)
            converge(running, want, lambda key, found: Gateway(
                api, found[0], found[1], state / "gateway-standin" / f"{key[0]}.{key[1]}.jsonl"))
            converge(balancers, load_balancer_services(core, want), lambda key, svc: LoadBalancer(
                svc, state / "gateway-standin" / f"lb.{key[0]}.{key[1]}.jsonl"))
            last_error = ""
        except Exception as exc:  # noqa: BLE001 - keep serving through API restarts
            msg = f"{type(exc).__name__}: {exc}"
            if msg != last_error:
                log(f"reconcile failed: {msg}; retrying")
                last_error = msg
            time.sleep(2)
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
