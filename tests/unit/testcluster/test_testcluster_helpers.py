"""The pure parts of the test cluster's runner and gateway stand-in (no cluster needed)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "hack" / "testcluster"))
import gateway_standin  # noqa: E402 - the test cluster's helpers
import workload_runner  # noqa: E402


def test_expand_is_the_kubelets():
    env = {"POD_NAMESPACE": "cert-manager"}
    assert workload_runner.expand("--ns=$(POD_NAMESPACE)", env) == "--ns=cert-manager"
    assert workload_runner.expand("$$(POD_NAMESPACE)", env) == "$(POD_NAMESPACE)"
    assert workload_runner.expand("$(UNSET)", env) == "$(UNSET)"


def test_filter_args_drops_own_flags_in_both_forms():
    args = ["discovery", "--kubeconfig=/x", "--monitoringAddr", ":15014", "--log_output_level=default:info"]
    assert workload_runner.filter_args(args, {"kubeconfig", "monitoringAddr"}) == [
        "discovery", "--log_output_level=default:info"]


def test_drop_unknown_keeps_known_and_negated_flags(tmp_path, monkeypatch):
    binary = tmp_path / "tool"
    binary.write_text("#!/bin/sh\ncat <<'H'\n  -v, --v=0   level\n      --secure-port int  port\n"
                      "      --[no-]web.enable-lifecycle  x\nH\n")
    binary.chmod(0o755)
    args = ["--v=2", "--secure-port=10250", "--metrics-listen-address=0", "--web.enable-lifecycle",
            "--no-web.enable-lifecycle", "positional"]
    assert workload_runner.drop_unknown(args, binary, "tool", "t") == [
        "--v=2", "--secure-port=10250", "--web.enable-lifecycle", "--no-web.enable-lifecycle", "positional"]


def test_container_port_by_number_and_name():
    container = SimpleNamespace(ports=[SimpleNamespace(name="https", container_port=10250)])
    assert workload_runner.container_port(container, "https") == 10250
    assert workload_runner.container_port(container, 443) == 443
    assert workload_runner.container_port(container, "metrics") is None


@pytest.mark.parametrize("pattern,host,ok", [
    ("bookinfo.smistio.test", "bookinfo.smistio.test", True),
    ("default/bookinfo.smistio.test", "bookinfo.smistio.test", True),
    ("*/bookinfo.smistio.test", "bookinfo.smistio.test", True),
    ("*.smistio.test", "bookinfo.smistio.test", True),
    ("*", "anything.test", True),
    ("other.smistio.test", "bookinfo.smistio.test", False),
    ("*.other.test", "bookinfo.smistio.test", False),
])
def test_gateway_host_matching(pattern, host, ok):
    assert gateway_standin.host_matches(pattern, host) is ok


class FakeGateway(gateway_standin.Gateway):
    """The stand-in's decisions on given objects instead of the API server's."""

    def __init__(self, gateways, virtualservices, services, pods, secrets=None):  # pylint: disable=super-init-not-called
        self.pod_labels = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
        self.namespace = "istio-system"
        self._gws, self._vss, self._svcs, self._pods = gateways, virtualservices, services, pods
        self._secrets = secrets or {}

    def gateways(self):
        items = sorted(self._gws, key=lambda g: g["metadata"]["creationTimestamp"])
        return [g for g in items if all(self.pod_labels.get(k) == v for k, v in g["spec"]["selector"].items())]

    def vs_rule(self, bound, host, path, port):
        custom = SimpleNamespace(list_cluster_custom_object=lambda *a: {"items": list(self._vss)})
        self.custom = custom
        return super().vs_rule(bound, host, path, port)

    def ingress_backend(self, host, path):
        return None

    def upstream(self, namespace, service, port, host, path, request):
        if (namespace, service) not in self._svcs:
            return 503, b"no healthy upstream", f"no Service {namespace}/{service}", {}
        if not self._pods.get((namespace, service)):
            return 503, b"no healthy upstream", f"Service {namespace}/{service} has no Ready pod", {}
        return 200, gateway_standin.BOOKINFO_HTML, f"{namespace}/{service}:{port} (productpage pods)", {}

    def policy_objects(self):
        return list(getattr(self, "_policies", []))


def gw(name, ns="default", selector=None, servers=None, created="2026-01-01T00:00:00Z"):
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"selector": selector or {"istio": "ingressgateway"}, "servers": servers or []}}


def vs(name, ns, gateways, dest, created="2026-01-01T00:00:00Z", redirect=False):
    rule = {"name": "r", "match": [{"uri": {"exact": "/productpage"}}]}
    rule.update({"redirect": {"scheme": "https", "redirectCode": 308}} if redirect
                else {"route": [{"destination": {"host": dest, "port": {"number": 9080}}}]})
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"hosts": ["bookinfo.smistio.test"], "gateways": gateways, "http": [rule]}}


HTTP = [{"port": {"number": 80}, "hosts": ["bookinfo.smistio.test"]}]


def test_route_goes_to_the_destination_in_the_virtualservices_namespace():
    ok = FakeGateway([gw("g", servers=HTTP)], [vs("v", "default", ["g"], "productpage")],
                     {("default", "productpage")}, {("default", "productpage"): ["pod"]})
    status, body, _h, why = ok.answer(80, "bookinfo.smistio.test", "/productpage")
    assert status == 200 and b"Simple Bookstore App" in body, why
    elsewhere = FakeGateway([gw("g", ns="other", servers=HTTP)], [vs("v", "other", ["g"], "productpage")],
                            {("default", "productpage")}, {("default", "productpage"): ["pod"]})
    status, _b, _h, why = elsewhere.answer(80, "bookinfo.smistio.test", "/productpage")
    assert status == 503 and "no Service other/productpage" in why


def test_wrong_selector_unbound_gateway_or_unknown_path_give_404():
    pods = {("default", "productpage"): ["pod"]}
    wrong = FakeGateway([gw("g", selector={"istio": "egressgateway"}, servers=HTTP)],
                        [vs("v", "default", ["g"], "productpage")], {("default", "productpage")}, pods)
    assert wrong.answer(80, "bookinfo.smistio.test", "/productpage")[0] == 404
    unbound = FakeGateway([gw("g", servers=HTTP)], [vs("v", "default", ["other-gw"], "productpage")],
                          {("default", "productpage")}, pods)
    assert unbound.answer(80, "bookinfo.smistio.test", "/productpage")[0] == 404
    ok = FakeGateway([gw("g", servers=HTTP)], [vs("v", "default", ["g"], "productpage")],
                     {("default", "productpage")}, pods)
    assert ok.answer(80, "bookinfo.smistio.test", "/reviews")[0] == 404


def test_redirect_code_and_https_redirect_come_from_the_objects():
    pods = {("default", "productpage"): ["pod"]}
    redirect = FakeGateway([gw("g", servers=HTTP)], [vs("v", "default", ["g"], "", redirect=True)],
                           {("default", "productpage")}, pods)
    status, _b, headers, _why = redirect.answer(80, "bookinfo.smistio.test", "/productpage")
    assert status == 308 and headers["Location"] == "https://bookinfo.smistio.test/productpage"
    forced = FakeGateway([gw("g", servers=[dict(HTTP[0], tls={"httpsRedirect": True})])],
                         [vs("v", "default", ["g"], "productpage")], {("default", "productpage")}, pods)
    assert forced.answer(80, "bookinfo.smistio.test", "/.well-known/acme-challenge/x")[0] == 301


def test_the_oldest_virtualservice_for_a_host_wins():
    pods = {("default", "productpage"): ["pod"]}
    both = FakeGateway([gw("g", servers=HTTP)],
                       [vs("new", "default", ["g"], "productpage.other.svc.cluster.local", created="2026-02-01T00:00:00Z"),
                        vs("old", "default", ["g"], "productpage", created="2026-01-01T00:00:00Z")],
                       {("default", "productpage")}, pods)
    assert both.answer(80, "bookinfo.smistio.test", "/productpage")[0] == 200


def test_tls_needs_simple_mode_and_the_named_secret():
    https = [{"port": {"number": 443}, "hosts": ["bookinfo.smistio.test"],
              "tls": {"mode": "PASSTHROUGH"}}]
    passthrough = FakeGateway([gw("g", servers=https)], [], set(), {})
    ctx, why = passthrough.tls_context("bookinfo.smistio.test")
    assert ctx is None and "PASSTHROUGH" in why
    none = FakeGateway([gw("g", servers=HTTP)], [], set(), {})
    assert none.tls_context("bookinfo.smistio.test")[0] is None


def policy(name, action, rules, selector=None):
    return {"metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"selector": {"matchLabels": selector or {"istio": "ingressgateway"}}, "action": action,
                     "rules": rules}}


# The observability role's policy: deny the tools' hosts to whoever is
# neither in the allowed ranges nor carries a JWT.
TOOLS_DENY = policy("observability-access", "DENY", [{
    "to": [{"operation": {"hosts": ["grafana.obs.test", "grafana.obs.test:*"]}}],
    "from": [{"source": {"notRemoteIpBlocks": ["192.0.2.0/24"], "notRequestPrincipals": ["*"]}}]}])


def with_policies(*policies):
    g = FakeGateway([gw("g", servers=HTTP + [{"port": {"number": 80}, "hosts": ["grafana.obs.test"]}])],
                    [vs("v", "default", ["g"], "productpage")], {("default", "productpage")},
                    {("default", "productpage"): ["pod"]})
    g._policies = list(policies)
    return g


def request(ip, host="grafana.obs.test"):
    return {"client_ip": ip, "headers": {"Host": host}}


def test_deny_policy_refuses_outside_the_ranges_and_only_for_its_hosts():
    g = with_policies(TOOLS_DENY)
    status, body, _h, why = g.answer(80, "grafana.obs.test", "/", request("127.0.0.1"))
    assert status == 403 and body == b"RBAC: access denied" and "observability-access" in why
    # Inside the allowed range the policy does not deny (no route: 404, past the RBAC filter).
    assert g.answer(80, "grafana.obs.test", "/", request("192.0.2.9"))[0] == 404
    # Another host is not the policy's business.
    assert g.answer(80, "bookinfo.smistio.test", "/productpage", request("127.0.0.1", "bookinfo.smistio.test"))[0] == 200
    # With a port in the Host header, the 'host:*' pattern matches.
    assert g.answer(80, "grafana.obs.test", "/", request("127.0.0.1", "grafana.obs.test:80"))[0] == 403


def test_allow_policies_admit_only_what_a_rule_matches():
    allow = policy("only-get", "ALLOW", [{"to": [{"operation": {"methods": ["GET"], "paths": ["/productpage"]}}]}])
    g = with_policies(allow)
    assert g.answer(80, "bookinfo.smistio.test", "/productpage", request("127.0.0.1", "bookinfo.smistio.test"))[0] == 200
    status, _b, _h, why = g.answer(80, "bookinfo.smistio.test", "/static", request("127.0.0.1", "bookinfo.smistio.test"))
    assert status == 403 and "only-get" in why
    other = policy("other", "DENY", [{}], selector={"istio": "egressgateway"})
    assert with_policies(other).answer(80, "bookinfo.smistio.test", "/productpage",
                                       request("127.0.0.1", "bookinfo.smistio.test"))[0] == 200


@pytest.mark.parametrize("spec_extra, rule", [
    ({"action": "CUSTOM"}, {}),
    ({}, {"when": [{"key": "request.headers[x]", "values": ["y"]}]}),
    ({}, {"from": [{"source": {"namespaces": ["default"]}}]}),
])
def test_what_the_stand_in_does_not_evaluate_is_a_503_that_says_so(spec_extra, rule):
    pol = policy("odd", "DENY", [rule])
    pol["spec"].update(spec_extra)
    status, _b, _h, why = with_policies(pol).answer(80, "grafana.obs.test", "/", request("127.0.0.1"))
    assert status == 503 and "not evaluated by the stand-in" in why, why


def test_a_request_has_no_principal_here():
    needs_jwt = policy("jwt", "ALLOW", [{"from": [{"source": {"requestPrincipals": ["*"]}}]}])
    assert with_policies(needs_jwt).answer(80, "grafana.obs.test", "/", request("192.0.2.9"))[0] == 403


def _lb_service(ranges, ports=(9090,), kind="LoadBalancer", address="127.0.100.9"):
    return SimpleNamespace(
        metadata=SimpleNamespace(namespace="istio-system", name="prometheus"),
        spec=SimpleNamespace(type=kind, cluster_ip="10.96.0.40", load_balancer_source_ranges=ranges,
                             ports=[SimpleNamespace(port=p, protocol="TCP") for p in ports]),
        status=SimpleNamespace(load_balancer=SimpleNamespace(ingress=[SimpleNamespace(ip=address)])))


def test_load_balancers_are_read_from_the_services_but_the_gateways():
    core = SimpleNamespace(list_service_for_all_namespaces=lambda: SimpleNamespace(items=[
        _lb_service(["192.0.2.0/24"]), _lb_service(None, kind="ClusterIP")]))
    found = gateway_standin.load_balancer_services(core, {})
    assert list(found) == [("istio-system", "prometheus", "127.0.100.9", "10.96.0.40", (9090,), ("192.0.2.0/24",))]
    # A gateway's Service is the gateway stand-in's own.
    assert gateway_standin.load_balancer_services(core, {("istio-system", "prometheus", "127.0.100.9", (9090,)): 1}) == {}


@pytest.mark.parametrize("ranges,relayed", [(["127.0.0.0/8"], True), (["192.0.2.0/24"], False), ([], True)])
def test_a_load_balancer_port_relays_only_sources_inside_its_ranges(tmp_path, ranges, relayed):
    """A real listener on loopback relaying to a real upstream; outside the ranges, a reset and nothing relayed."""
    upstream = socket.create_server(("127.0.0.1", 0))
    upstream.settimeout(3)
    record = tmp_path / "lb.jsonl"
    lb = gateway_standin.LoadBalancerPort(("127.0.0.1", 0), upstream.getsockname(), ranges, record)
    try:
        with socket.create_connection(lb.sock.getsockname(), timeout=3) as client:
            if relayed:
                conn, _peer = upstream.accept()
                with conn:
                    client.sendall(b"ping")
                    assert conn.recv(4) == b"ping"
                    conn.sendall(b"pong")
                    assert client.recv(4) == b"pong"
            else:
                with pytest.raises(ConnectionResetError):
                    client.sendall(b"ping")
                    client.recv(4)
                upstream.settimeout(0.3)
                with pytest.raises(socket.timeout):
                    upstream.accept()
        event = gateway_standin.json.loads(record.read_text().splitlines()[-1])
        assert event["allowed"] is relayed and event["client"] == "127.0.0.1"
        assert ("relayed to" if relayed else "dropped (reset)") in event["why"]
    finally:
        lb.close()
        upstream.close()
