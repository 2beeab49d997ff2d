# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_proxy_request's logic (plugins/module_utils/_service_proxy.py) with
a fake API client: the proxy path, the wait for an expected status, the
cookie login with a TokenRequest token, and failure messages that name the
Service, the path and the answer but never the credentials."""

from __future__ import annotations

import json

from ansible_collections.servicemesh.istio.plugins.module_utils._service_proxy import (
    cookies_of, proxy_path, run_service_proxy)


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
            "status": [200], "timeout": 10, "request_timeout": 5, "login": None}
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
