"""proxy_config_info against the real istiod of the test cluster.

Real: istiod (pilot-discovery, run on the host by the test cluster) computes
each pod's clusters, listeners and routes from the real PeerAuthentication,
DestinationRule, VirtualService and Gateway objects applied here, and serves
them over xDS; the module reads them presenting each pod's node identity, the
way the pod's pilot-agent would. Bookinfo's pods and the ingress gateway's pod
are real API objects injected by the real injection webhook.

Not here: no Envoy runs (KWOK's fake nodes run no container), so the `envoy`
source cannot be read; the tests check that `auto` says so and falls back to
istiod, and that `envoy` alone fails naming the pod.

The module installs Istio and Bookinfo (site.yml, tags istio,bookinfo) in a
namespace of its own, and leaves an empty cluster at the end (conftest.reset_cluster).
"""

from __future__ import annotations

import base64
import time

import pytest
from kubernetes import client

from conftest import REPO_ROOT, both_ways, module_play, reset_cluster, results_of, run_playbook, stable
import trustme

SITE = REPO_ROOT / "playbooks/site.yml"
NS = "smistio-pci"
HOST = "bookinfo.pci.smistio.test"
VARS = {"bookinfo_namespace": NS}
NETWORKING = ("networking.istio.io", "v1")
SECURITY = ("security.istio.io", "v1")


def apply(api, group_version, plural, body, namespace=NS):
    custom = client.CustomObjectsApi(api)
    try:
        custom.create_namespaced_custom_object(*group_version, namespace, plural, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        current = custom.get_namespaced_custom_object(*group_version, namespace, plural, body["metadata"]["name"])
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        custom.replace_namespaced_custom_object(*group_version, namespace, plural, body["metadata"]["name"], body)


def delete(api, group_version, plural, name, namespace=NS):
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(*group_version, namespace, plural, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def info(tmp_path, monkeypatch, args, name="Read", in_process=True):
    """Run the module once (in process by default) and return (run, result)."""
    monkeypatch.setenv("SERVICEMESH_ISTIO_IN_PROCESS", "1" if in_process else "0")
    run = run_playbook(module_play(tmp_path, [{"name": name, "servicemesh.istio.proxy_config_info": args}]))
    return run, results_of(run, name)[0]


@pytest.fixture(scope="module")
def mesh(k8s):
    converge = run_playbook(SITE, "--tags", "istio,bookinfo", extra_vars=VARS)
    assert converge.rc == 0, converge.explain()
    try:
        yield NS
    finally:
        reset_cluster()


def test_without_a_policy_every_port_is_permissive_and_auto_falls_back_to_istiod(tmp_path, monkeypatch, mesh, k8s):
    fast, module = both_ways(monkeypatch, module_play(tmp_path, [{
        "name": "Read", "servicemesh.istio.proxy_config_info": {"namespace": mesh, "min_pods": 6}}]))
    assert fast.rc == 0, fast.explain()
    assert module.rc == 0, module.explain()
    got = results_of(fast, "Read")[0]

    def without_notes(result):
        # The note quotes the API server's exec error, whose network detail may differ between two calls.
        return dict(stable(result), proxies=[{k: v for k, v in p.items() if k != "note"} for p in result["proxies"]])

    assert without_notes(got) == without_notes(results_of(module, "Read")[0])
    proxies = got["proxies"]
    assert sorted(p["name"].rsplit("-", 2)[0] for p in proxies) == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]
    for proxy in proxies:
        assert proxy["source"] == "istiod" and "could not be read" in proxy["note"], proxy
        assert proxy["kind"] == "sidecar"
        assert [(i["port"], i["mode"]) for i in proxy["inbound"]] == [(9080, "permissive")], proxy["inbound"]
        assert proxy["counts"]["clusters"] > 5 and proxy["counts"]["listeners"] > 0
    assert got["problems"] == [] and got["changed"] is False


def test_strict_is_seen_on_every_port_and_a_port_level_exception_is_named(tmp_path, monkeypatch, mesh, k8s):
    apply(k8s, SECURITY, "peerauthentications", {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": mesh}, "spec": {"mtls": {"mode": "STRICT"}}})
    run, got = info(tmp_path, monkeypatch, {"namespace": mesh, "source": "istiod",
                                            "expect": {"inbound_mode": "strict"}, "timeout": 60,
                                            "initial_sleep": 0.25, "max_sleep": 1})
    assert run.rc == 0, run.explain()
    assert all(i["mode"] == "strict" and i["accepts"] == ["mtls"] for p in got["proxies"] for i in p["inbound"])
    # A workload-level policy that keeps reviews' port 9080 PERMISSIVE.
    apply(k8s, SECURITY, "peerauthentications", {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "reviews-exception", "namespace": mesh},
        "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "STRICT"},
                 "portLevelMtls": {"9080": {"mode": "PERMISSIVE"}}}})
    run, got = info(tmp_path, monkeypatch, {"namespace": mesh, "source": "istiod",
                                            "expect": {"inbound_mode": "strict"}, "timeout": 5,
                                            "initial_sleep": 0.25, "max_sleep": 1, "progress_interval": 2})
    assert run.rc != 0
    message = got["msg"]
    assert message.startswith("Timed out after"), message
    for version in ("v1", "v2", "v3"):
        assert f"{mesh}/reviews-{version}-" in message, message
    assert "port 9080: inbound mode permissive (accepts mtls, plaintext), expected strict" in message, message
    assert "productpage" not in message and "ratings" not in message, message
    assert "waiting" in run.stderr and "for the pushed configuration" in run.stderr, run.stderr[-2000:]
    delete(k8s, SECURITY, "peerauthentications", "reviews-exception")
    delete(k8s, SECURITY, "peerauthentications", "default")


def test_a_destination_rule_with_tls_disabled_shows_on_the_callers_cluster(tmp_path, monkeypatch, mesh, k8s):
    ratings = f"outbound|9080||ratings.{mesh}.svc.cluster.local"
    run, got = info(tmp_path, monkeypatch, {"namespace": mesh, "label_selectors": ["app=reviews", "version=v2"],
                                            "source": "istiod"})
    assert run.rc == 0, run.explain()
    before = {c["name"]: c for c in got["proxies"][0]["clusters"]}
    assert before[ratings]["tls"] == "auto", before[ratings]
    apply(k8s, NETWORKING, "destinationrules", {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "pci-ratings", "namespace": mesh},
        "spec": {"host": "ratings", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}})
    deadline = time.monotonic() + 60
    while True:
        run, got = info(tmp_path, monkeypatch, {"namespace": mesh, "label_selectors": ["app=reviews", "version=v2"],
                                                "source": "istiod"})
        after = {c["name"]: c for c in got["proxies"][0]["clusters"]}
        if after[ratings]["tls"] == "disable" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert after[ratings]["tls"] == "disable", after[ratings]
    delete(k8s, NETWORKING, "destinationrules", "pci-ratings")


def test_a_weighted_split_reaches_productpage_and_a_missing_subset_is_reported(tmp_path, monkeypatch, mesh, k8s):
    apply(k8s, NETWORKING, "destinationrules", {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "pci-reviews", "namespace": mesh},
        "spec": {"host": "reviews", "subsets": [{"name": n, "labels": {"version": n}} for n in ("v1", "v2", "v3")]}})
    split = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "pci-reviews", "namespace": mesh},
             "spec": {"hosts": ["reviews"], "http": [{"route": [
                 {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                 {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}]}}
    apply(k8s, NETWORKING, "virtualservices", split)
    args = {"namespace": mesh, "label_selectors": ["app=productpage"], "source": "istiod", "hosts": ["reviews"],
            "expect": {"routes": [{"host": "reviews", "weights": {"v1": 80, "v2": 20}}], "no_problems": True},
            "timeout": 120, "initial_sleep": 0.25, "max_sleep": 2}
    run, got = info(tmp_path, monkeypatch, args)
    assert run.rc == 0, run.explain()
    (vhost,) = got["proxies"][0]["routes"]
    dests = vhost["routes"][0]["destinations"]
    assert [(d["subset"], d["weight"], d["cluster"]) for d in dests] == [
        ("v1", 80, f"outbound|9080|v1|reviews.{mesh}.svc.cluster.local"),
        ("v2", 20, f"outbound|9080|v2|reviews.{mesh}.svc.cluster.local")]
    # The wrong configuration: a subset no DestinationRule defines.
    split["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v9"
    apply(k8s, NETWORKING, "virtualservices", split)
    # First wait (as long as a loaded machine needs) for istiod to push the
    # changed route, then ask for no problems: the push alone is not enough.
    args["expect"] = {"routes": [{"host": "reviews", "weights": {"v1": 80, "v9": 20}}]}
    run, got = info(tmp_path, monkeypatch, args)
    assert run.rc == 0, run.explain()
    args["expect"] = dict(args["expect"], no_problems=True)
    args["timeout"] = 2
    run, got = info(tmp_path, monkeypatch, args)
    assert run.rc != 0
    assert f"outbound|9080|v9|reviews.{mesh}.svc.cluster.local, which istiod did not push" in got["msg"], got["msg"]
    assert "no DestinationRule defines subset v9" in got["msg"], got["msg"]
    assert any("v9" in p for p in got["problems"]), got["problems"]
    delete(k8s, NETWORKING, "virtualservices", "pci-reviews")
    delete(k8s, NETWORKING, "destinationrules", "pci-reviews")


def test_the_gateway_serves_the_host_on_80_and_443_with_its_secret(tmp_path, monkeypatch, mesh, k8s):
    issued = trustme.CA().issue_cert(HOST)
    key, cert = issued.private_key_pem.bytes(), issued.cert_chain_pems[0].bytes()
    core = client.CoreV1Api(k8s)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "pci-tls", "namespace": "istio-system"},
              "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}
    try:
        core.create_namespaced_secret("istio-system", secret)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    apply(k8s, NETWORKING, "gateways", {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "pci-gateway", "namespace": mesh},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST]},
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
             "tls": {"mode": "SIMPLE", "credentialName": "pci-tls"}}]}})
    apply(k8s, NETWORKING, "virtualservices", {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "pci-gateway", "namespace": mesh},
        "spec": {"hosts": [HOST], "gateways": ["pci-gateway"], "http": [
            {"match": [{"uri": {"prefix": "/productpage"}}],
             "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}})
    args = {"namespace": "istio-system", "label_selectors": ["istio=ingressgateway"], "source": "istiod",
            "expect": {"gateway_servers": [
                {"port": 80, "hosts": [HOST], "tls_mode": "none"},
                {"port": 443, "hosts": [HOST], "tls_mode": "simple", "credential_name": "pci-tls"}]},
            "timeout": 60, "initial_sleep": 0.25, "max_sleep": 1}
    run, got = info(tmp_path, monkeypatch, args)
    assert run.rc == 0, run.explain()
    (proxy,) = got["proxies"]
    assert proxy["kind"] == "router"
    servers = {s["service_port"]: s for s in proxy["gateway_servers"] if HOST in s["hosts"] + s["server_names"]}
    assert servers[443]["secrets"] == ["kubernetes://pci-tls"] and servers[443]["server_names"] == [HOST]
    assert servers[80]["tls_mode"] == "none"
    # productpage is where the gateway's route for the host goes.
    routes = [r for v in proxy["routes"] if HOST in " ".join(v["domains"]) for r in v["routes"]]
    assert any(d["host"] == f"productpage.{mesh}.svc.cluster.local" and d["port"] == 9080
               for r in routes for d in r["destinations"]), routes
    # A wrong expectation is named: another secret.
    args["expect"]["gateway_servers"][1]["credential_name"] = "other-tls"
    args["timeout"] = 2
    run, got = info(tmp_path, monkeypatch, args)
    assert run.rc != 0 and "expected kubernetes://other-tls" in got["msg"], got.get("msg")
    core.delete_namespaced_secret("pci-tls", "istio-system")


def test_the_envoy_source_cannot_be_read_here_and_says_which_pod(tmp_path, monkeypatch, mesh):
    run, got = info(tmp_path, monkeypatch, {"namespace": mesh, "label_selectors": ["app=details"], "source": "envoy",
                                            "timeout": 0})
    assert run.rc != 0
    assert f"cannot read the config dump of {mesh}/details-v1-" in got["msg"], got["msg"]


@pytest.mark.parametrize("args, expected", [
    ({"namespace": NS, "name": "x", "label_selectors": ["a=b"]}, "mutually exclusive: name|label_selectors"),
    ({"namespace": NS, "istiod_address": "istiod"}, "istiod_address must be host:port"),
    ({"namespace": NS, "expect": {"routes": [{"host": "reviews", "weights": {"v1": 150}}]}},
     "expect.routes[0].weights.v1 must be an integer from 0 to 100"),
    ({"namespace": NS, "source": "kubelet"}, "value of source must be one of"),
])
def test_bad_input_is_refused_the_same_way_both_ways(tmp_path, monkeypatch, args, expected):
    fast, module = both_ways(monkeypatch, module_play(tmp_path, [{"name": "Read",
                                                                  "servicemesh.istio.proxy_config_info": args}]))
    messages = []
    for run in (fast, module):
        assert run.rc != 0
        result = results_of(run, "Read")[0]
        assert result.get("failed") and expected in result["msg"], result
        assert "attempts" not in result
        messages.append(result["msg"])
    assert messages[0] == messages[1]
