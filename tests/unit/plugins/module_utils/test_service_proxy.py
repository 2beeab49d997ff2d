# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_proxy_request's logic (plugins/module_utils/_service_proxy.py) with
a fake API client: the proxy path, the wait for an expected status, the
cookie login with a TokenRequest token, and failure messages that name the
Service, the path and the answer but never the credentials."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils._service_proxy import (
    ExternalClient, cookies_of, proxy_path, run_service_proxy, source_inside)


class FakeClient:
    """A unit-test double of the API client (recorded answers, calls kept): the
    module's logic on paths, logins and tokens; the real service proxy is
    exercised by tests/cluster/test_observability.py."""

    def __init__(self, answers, login_answers=None):
        self.answers = list(answers)
        self.login_answers = list(login_answers or [])
        self.calls = []
        self.tokens = 0

    def request(self, method, path, query, headers, body=None, form=None, timeout=10):
        self.calls.append({"method": method, "path": path, "query": query, "headers": dict(headers),
                           "body": body, "form": form})
        if method == "POST":
            return self.login_answers.pop(0) if len(self.login_answers) > 1 else self.login_answers[0]
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def token(self, service_account, namespace, expiration):
        self.tokens += 1
        return f"tok-{service_account}-{namespace}-{expiration}"


class Clock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t

    def sleep(self, s):
        self.t += s


def params(**kw):
    base = {"namespace": "istio-system", "service": "prometheus", "port": "9090", "path": "/-/ready", "query": {},
            "status": [200], "timeout": 10, "request_timeout": 5, "login": None, "external": None,
            "expect_targets_up": [], "progress_interval": 0}
    base.update(kw)
    return base


def test_proxy_path():
    assert proxy_path("istio-system", "prometheus", "9090", "/-/ready") == \
        "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/-/ready"
    assert proxy_path("ns", "kiali", "", "kiali/healthz") == "/api/v1/namespaces/ns/services/kiali/proxy/kiali/healthz"


def test_waits_until_the_expected_status():
    fake = FakeClient([(503, b"Service Unavailable", []), (503, b"", []), (200, b"Prometheus Server is Ready.", [])])
    clock = Clock()
    got = run_service_proxy(params(), fake, clock.sleep, clock.now)
    assert got["status"] == 200 and got["attempts"] == 3 and not got["changed"]
    assert got["content"] == "Prometheus Server is Ready." and got["json"] is None


def test_timeout_names_the_service_the_path_and_the_answer():
    fake = FakeClient([(503, b'{"message": "no endpoints available for service \\"prometheus\\""}', [])])
    clock = Clock()
    got = run_service_proxy(params(timeout=3), fake, clock.sleep, clock.now)
    assert got["failed"]
    assert "service istio-system/prometheus:9090, GET /-/ready" in got["msg"]
    assert "HTTP 503" in got["msg"] and "no endpoints available" in got["msg"] and "expected HTTP 200" in got["msg"]


def test_a_transport_error_is_reported():
    class Broken(FakeClient):
        def request(self, *a, **kw):
            raise ConnectionError("connection refused\nmore")

    clock = Clock()
    got = run_service_proxy(params(timeout=0), Broken([]), clock.sleep, clock.now)
    assert got["failed"] and "no answer connection refused" in got["msg"] and got["attempts"] == 1


def test_login_with_a_token_then_the_request_carries_the_cookie():
    fake = FakeClient([(200, json.dumps({"elements": {}}).encode(), [])],
                      [(200, b"{}", ["kiali-token=abc.def; Path=/kiali; HttpOnly"])])
    clock = Clock()
    got = run_service_proxy(params(service="kiali", port="20001", path="/kiali/api/namespaces/graph",
                                   query={"namespaces": "default"},
                                   login={"path": "/kiali/api/authenticate", "format": "form", "fields": {},
                                          "service_account_field": "token", "service_account": "kiali",
                                          "service_account_namespace": "", "service_account_ttl": 600}),
                            fake, clock.sleep, clock.now)
    assert got["json"] == {"elements": {}} and got["logged_in"]
    login, request = fake.calls
    assert login["form"] == {"token": "tok-kiali-istio-system-600"}
    assert login["path"].endswith("/services/kiali:20001/proxy/kiali/api/authenticate")
    assert request["headers"]["Cookie"] == "kiali-token=abc.def"
    assert "tok-kiali" not in json.dumps(got)


def test_a_refused_login_fails_without_the_password():
    fake = FakeClient([(200, b"[]", [])], [(401, b'{"message": "Invalid username or password"}', [])])
    clock = Clock()
    got = run_service_proxy(params(service="grafana", port="3000", path="/api/search", timeout=2,
                                   login={"path": "/login", "format": "json",
                                          "fields": {"user": "admin", "password": "s3cret-value"}}),
                            fake, clock.sleep, clock.now)
    assert got["failed"] and "POST /login" in got["msg"] and "HTTP 401" in got["msg"]
    assert "s3cret-value" not in json.dumps(got)
    assert all(c["method"] == "POST" for c in fake.calls)


def test_cookies_of():
    assert cookies_of(["a=1; Path=/", "b=2; HttpOnly", "garbage;;=;"]) == "a=1; b=2"
    assert cookies_of([]) == ""


# --- Prometheus' targets ------------------------------------------------------

def targets_answer(*targets):
    return json.dumps({"status": "success", "data": {"activeTargets": [
        {"labels": {"app": app, "job": job}, "scrapeUrl": url, "health": health, "lastError": error}
        for app, job, url, health, error in targets]}}).encode()


ISTIOD_DOWN = ("istiod", "kubernetes-pods", "http://10.96.0.12:15014/metrics", "down",
               'Get "http://10.96.0.12:15014/metrics": dial tcp 10.96.0.12:15014: connect: connection refused')
ISTIOD_UP = ("istiod", "kubernetes-pods", "http://10.96.0.12:15014/metrics", "up", "")


def test_waits_for_the_targets_and_says_which_are_down_while_waiting():
    fake = FakeClient([(200, targets_answer(), []), (200, targets_answer(ISTIOD_DOWN), []),
                       (200, targets_answer(ISTIOD_DOWN), []), (200, targets_answer(ISTIOD_UP), [])])
    clock, lines = Clock(), []
    got = run_service_proxy(params(path="/api/v1/targets", expect_targets_up=["istiod"], progress_interval=0.5),
                            fake, clock.sleep, clock.now, progress=lines.append)
    assert not got.get("failed") and got["attempts"] == 4, got
    assert got["targets"]["missing"] == [] and got["targets"]["up"][0]["url"].endswith(":15014/metrics")
    assert lines and all(line.startswith("waiting ") for line in lines), lines
    assert any("istiod not up: http://10.96.0.12:15014/metrics (down: Get" in line for line in lines), lines


def test_targets_still_down_at_the_timeout_fail_with_prometheus_last_error():
    fake = FakeClient([(200, targets_answer(ISTIOD_DOWN), [])])
    clock = Clock()
    got = run_service_proxy(params(path="/api/v1/targets", expect_targets_up=["istiod"], timeout=3),
                            fake, clock.sleep, clock.now)
    assert got["failed"]
    assert "the targets istiod are not up: istiod not up: http://10.96.0.12:15014/metrics" in got["msg"], got["msg"]
    assert "connect: connection refused" in got["msg"], got["msg"]
    assert "retries" not in got["msg"]


def test_no_target_at_all_is_named():
    fake = FakeClient([(200, targets_answer(("ratings", "kubernetes-pods", "http://x/metrics", "up", "")), [])])
    clock = Clock()
    got = run_service_proxy(params(path="/api/v1/targets", expect_targets_up=["istiod"], timeout=1),
                            fake, clock.sleep, clock.now)
    assert got["failed"] and "istiod: no active target" in got["msg"], got["msg"]


# --- at an external address (real servers on loopback) -------------------------

class Served:
    """An HTTP(S) server on loopback answering ``answers[path] = (status, headers, body)``,
    keeping the SNI and Host of each request."""

    def __init__(self, address, answers, issued=None, workdir=None, reset=False):
        self.answers, self.seen = answers, []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                served.seen.append({"host": self.headers.get("Host"), "path": self.path,
                                    "sni": getattr(self.connection, "sni", None), "client": self.client_address[0]})
                status, headers, body = served.answers.get(self.path.split("?")[0], (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                if reset:  # what a load balancer dropping the source does, quickly
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    raise OSError("refused")
                if issued is None:
                    return sock, addr
                tls = context.wrap_socket(sock, server_side=True)
                return tls, addr

        if issued is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*issued.write(workdir, "served"))

            def remember(sslobj, name, _ctx):
                served.last_sni = name

            context.sni_callback = remember
        self.server = Server((address, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(tmp_path, loopback_net):
    started = []

    def _start(answers, issued=None, reset=False):
        server = Served(loopback_net + "20", answers, issued, tmp_path, reset)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


def external_params(server, host, **external):
    return params(service=None, namespace=None, path="/", status=[302], timeout=0, external=dict(
        {"host": host, "address": server.server.server_address[0], "port": server.port, "scheme": "https",
         "ca_path": None, "source_address": "", "source_ranges": [], "status_outside": []}, **external))


def test_https_at_the_address_with_the_name_as_sni_and_host(served, test_ca, ca_bundle):
    server = served({"/": (302, {"Location": "/login"}, b"")}, test_ca.issue("grafana.obs.example.com"))
    got = run_service_proxy(external_params(server, "grafana.obs.example.com", ca_path=ca_bundle), ExternalClient(
        external_params(server, "grafana.obs.example.com", ca_path=ca_bundle)["external"]))
    assert not got.get("failed"), got
    assert got["status"] == 302 and got["headers"]["location"] == "/login"
    assert got["url"] == "https://grafana.obs.example.com:%d/" % server.port
    assert server.last_sni == "grafana.obs.example.com"
    assert server.seen[0]["host"] == "grafana.obs.example.com:%d" % server.port
    assert got["source"] == server.seen[0]["client"]


def test_a_certificate_for_another_name_is_no_answer(served, test_ca, ca_bundle):
    server = served({"/": (200, {}, b"ok")}, test_ca.issue("other.example.com"))
    p = external_params(server, "grafana.obs.example.com", ca_path=ca_bundle)
    got = run_service_proxy(p, ExternalClient(p["external"]))
    assert got["failed"] and got["status"] == -1
    assert "https://grafana.obs.example.com:%d/ (at " % server.port in got["msg"], got["msg"]
    assert "certificate verify failed" in got["msg"] and "expected HTTP 302" in got["msg"], got["msg"]


@pytest.mark.parametrize("ranges,expected", [(["127.0.0.0/8"], [200]), (["192.0.2.0/24"], [403])])
def test_the_expected_answer_follows_the_source_and_the_ranges(served, ranges, expected):
    server = served({"/-/ready": (200, {}, b"Prometheus Server is Ready.")})
    p = dict(external_params(server, "prometheus.obs.example.com", scheme="http", source_ranges=ranges,
                             status_outside=[403]), path="/-/ready", status=[200])
    got = run_service_proxy(p, ExternalClient(p["external"]))
    inside = ranges == ["127.0.0.0/8"]
    assert got["source_inside"] is inside and got["source"].startswith("127.")
    if inside:
        assert not got.get("failed") and got["status"] == 200, got
    else:
        # Answered although outside the allowed ranges: the restriction does not hold.
        assert got["failed"] and "outside 192.0.2.0/24" in got["msg"] and "HTTP 200" in got["msg"], got["msg"]
        assert "expected HTTP 403" in got["msg"], got["msg"]


def test_a_dropped_connection_is_what_a_load_balancer_gives_outside_its_ranges(served):
    server = served({}, reset=True)
    p = dict(external_params(server, "127.0.0.1", scheme="http", source_ranges=["192.0.2.0/24"],
                             status_outside=[-1]), status=[200])
    got = run_service_proxy(p, ExternalClient(p["external"]))
    assert not got.get("failed") and got["status"] == -1 and got["source_inside"] is False, got
    assert got["error"], got
    # From inside, the same refusal fails, naming it.
    p["external"]["source_ranges"] = ["127.0.0.0/8"]
    got = run_service_proxy(p, ExternalClient(p["external"]))
    assert got["failed"] and "no answer" in got["msg"] and "expected HTTP 200" in got["msg"], got["msg"]


def test_source_inside():
    assert source_inside("192.0.2.7", ["198.51.100.0/24", "192.0.2.0/24"])
    assert not source_inside("192.0.2.7", ["198.51.100.0/24"]) and not source_inside("", ["0.0.0.0/0"])
