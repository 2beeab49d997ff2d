# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The observability role's decisions (plugins/filter/observability.py): its
input checks, the changes it makes to upstream's addon manifests, the access
summary and the Kiali graph summary. The manifests here are small copies of
the fields of upstream's samples/addons that the changes touch."""

from __future__ import annotations

import configparser

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.filter.observability import (
    observability_access, observability_addon_manifests, observability_addons_to_install, observability_exposure_checks,
    observability_exposure_verdict, observability_graph_summary, observability_input_errors,
    observability_istio_targets, observability_stale_objects)

GOOD = {"namespace": "istio-system", "addons": ["prometheus", "grafana", "kiali", "jaeger"], "exposure": "none",
        "kiali_auth_strategy": "token", "allowed_source_ranges": [], "grafana_admin_secret": "grafana-admin",
        "kiali_signing_key_secret": "kiali-signing-key", "images": {}, "resources": {}}

KIALI = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kiali", "namespace": "istio-system"},
     "data": {"config.yaml": yaml.safe_dump({
         "auth": {"strategy": "anonymous"}, "login_token": {"signing_key": "CHANGEME00000000"},
         "external_services": {"prometheus": {"enabled": True}}, "server": {"web_root": "/kiali"}})}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kiali"},
     "subjects": [{"kind": "ServiceAccount", "name": "kiali", "namespace": "istio-system"}]},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kiali", "namespace": "istio-system"},
     "spec": {"ports": [{"port": 20001}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kiali", "namespace": "istio-system"},
     "spec": {"template": {"spec": {"containers": [{"name": "kiali", "image": "quay.io/kiali/kiali:v2.26",
                                                    "volumeMounts": [{"name": "kiali-configuration",
                                                                      "mountPath": "/kiali-configuration"}]}],
                                    "volumes": [{"name": "kiali-configuration", "configMap": {"name": "kiali"}}]}}}},
]
GRAFANA = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grafana", "namespace": "istio-system"},
     "data": {"grafana.ini": "[analytics]\ncheck_for_updates = true\n[server]\ndomain = ''\n",
              "datasources.yaml": yaml.safe_dump({"apiVersion": 1, "datasources": [
                  {"name": "Prometheus", "type": "prometheus", "url": "http://prometheus:9090"},
                  {"name": "Loki", "type": "loki", "url": "http://loki:3100"}]})}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "grafana", "namespace": "istio-system"},
     "spec": {"template": {"spec": {"containers": [{"name": "grafana", "image": "docker.io/grafana/grafana:12.0.1",
                                                    "env": [{"name": "GF_AUTH_ANONYMOUS_ENABLED", "value": "true"},
                                                            {"name": "GF_AUTH_ANONYMOUS_ORG_ROLE", "value": "Admin"},
                                                            {"name": "GF_SECURITY_ADMIN_PASSWORD", "value": "admin"},
                                                            {"name": "GF_SECURITY_ADMIN_USER", "value": "admin"}]}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "grafana", "namespace": "istio-system"},
     "spec": {"type": "ClusterIP", "ports": [{"port": 3000}]}},
]


def by_kind(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


# --- inputs ---------------------------------------------------------------------

def test_good_inputs_have_no_error():
    assert observability_input_errors(GOOD) == []


@pytest.mark.parametrize(("change", "named"), [
    ({"addons": ["prometheus", "zipkin"]}, "observability_addons names unknown addons zipkin"),
    ({"exposure": "nodeport"}, "observability_exposure must be one of none, gateway, loadbalancer"),
    ({"exposure": "loadbalancer"}, "observability_allowed_source_ranges is empty"),
    ({"exposure": "loadbalancer", "allowed_source_ranges": ["10.0.0.0/8"], "kiali_auth_strategy": "anonymous"},
     "observability_kiali_auth_strategy is anonymous and observability_exposure is loadbalancer"),
    ({"allowed_source_ranges": ["10.0.0.1/8"]}, "malformed CIDRs: 10.0.0.1/8"),
    ({"allowed_source_ranges": ["10.0.0.300/32"]}, "malformed CIDRs: 10.0.0.300/32"),
    ({"allowed_source_ranges": ["10.0.0.1"]}, "malformed CIDRs: 10.0.0.1"),
    ({"exposure": "gateway", "allowed_source_ranges": ["10.0.0.0/8"], "cert_issuer": "le"},
     "observability_domain is empty"),
    ({"exposure": "gateway", "domain": "obs.example.org", "cert_issuer": "le"},
     "neither observability_allowed_source_ranges nor observability_jwt_issuer"),
    ({"exposure": "gateway", "domain": "obs.example.org", "allowed_source_ranges": ["10.0.0.0/8"]},
     "observability_cert_issuer is empty"),
    ({"jwt_issuer": "https://issuer.example.org"}, "observability_jwt_jwks_uri is empty"),
    ({"kiali_auth_strategy": "openid"}, "observability_kiali_auth_strategy must be token or anonymous"),
    ({"prometheus_url": "prometheus:9090"}, "observability_prometheus_url 'prometheus:9090' must be an http(s) URL"),
    ({"images": {"zipkin": "x"}}, "observability_images names unknown addons zipkin"),
    ({"storage": {"kiali": {"size": "1Gi"}}}, "observability_storage names kiali; only prometheus and grafana"),
    ({"storage": {"prometheus": {"size": "ten gigs"}}}, "observability_storage.prometheus must be {size:"),
    ({"storage": {"grafana": {"size": "1Gi", "class": "x"}}}, "observability_storage.grafana must be {size:"),
    ({"storage": {"grafana": {"size": "1Gi", "storage_class": "Fast_SSD"}}},
     "observability_storage.grafana.storage_class 'Fast_SSD' is not a StorageClass name"),
    ({"storage": ["prometheus"]}, "observability_storage must be a mapping by addon"),
    ({"check_source_address": "my-laptop"}, "observability_check_source_address 'my-laptop' is not an IP address"),
])
def test_each_bad_input_is_refused_naming_its_variable(change, named):
    errors = observability_input_errors(dict(GOOD, **change))
    assert any(named in e for e in errors), errors


@pytest.mark.parametrize("change", [
    {"exposure": "loadbalancer", "allow_public": True},
    {"exposure": "loadbalancer", "allowed_source_ranges": ["203.0.113.0/24", "2001:db8::/32"]},
    {"exposure": "gateway", "domain": "obs.example.org", "cert_issuer": "le",
     "jwt_issuer": "https://issuer.example.org", "jwt_jwks_uri": "https://issuer.example.org/jwks"},
    {"exposure": "loadbalancer", "allowed_source_ranges": ["10.0.0.0/8"], "kiali_auth_strategy": "anonymous",
     "kiali_anonymous_exposed": True},
    {"kiali_auth_strategy": "anonymous"},
])
def test_accepted_combinations(change):
    assert observability_input_errors(dict(GOOD, **change)) == []


def test_an_external_prometheus_replaces_the_addons():
    assert observability_addons_to_install(["jaeger", "prometheus", "kiali"]) == ["prometheus", "kiali", "jaeger"]
    assert observability_addons_to_install(["prometheus", "grafana"], "http://kps:9090") == ["grafana"]


# --- manifests -------------------------------------------------------------------

def test_kiali_gets_the_token_strategy_and_the_key_from_its_secret():
    out = observability_addon_manifests(KIALI, "kiali", {"namespace": "observe", "installed": ["kiali", "grafana"]})
    conf = yaml.safe_load(by_kind(out, "ConfigMap")["data"]["config.yaml"])
    assert conf["auth"]["strategy"] == "token"
    assert conf["login_token"]["signing_key"] == "secret:kiali-signing-key:value.txt"
    assert conf["external_services"]["prometheus"]["url"] == "http://prometheus.observe:9090"
    assert conf["external_services"]["grafana"]["internal_url"] == "http://grafana.observe:3000"
    spec = by_kind(out, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "login-token-signing-key", "secret": {"secretName": "kiali-signing-key",
                                                          "items": [{"key": "value.txt", "path": "value.txt"}]}} \
        in spec["volumes"]
    assert {"name": "login-token-signing-key", "mountPath": "/kiali-override-secrets/login-token-signing-key",
            "readOnly": True} in spec["containers"][0]["volumeMounts"]
    # Namespaced objects move; the binding's subject follows; cluster objects have none.
    assert by_kind(out, "ConfigMap")["metadata"]["namespace"] == "observe"
    binding = by_kind(out, "ClusterRoleBinding")
    assert "namespace" not in binding["metadata"] and binding["subjects"][0]["namespace"] == "observe"
    assert all(d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "servicemesh.istio.observability"
               for d in out)


def test_anonymous_kiali_only_when_asked_and_the_input_is_not_changed():
    before = yaml.safe_dump(KIALI)
    out = observability_addon_manifests(KIALI, "kiali", {"kiali_auth_strategy": "anonymous"})
    assert yaml.safe_load(by_kind(out, "ConfigMap")["data"]["config.yaml"])["auth"]["strategy"] == "anonymous"
    assert yaml.safe_dump(KIALI) == before


def test_grafana_anonymous_off_and_credentials_from_the_secret():
    opts = {"grafana_admin_secret": "gf-admin", "installed": ["grafana"]}
    out = observability_addon_manifests(GRAFANA, "grafana", opts)
    env = {e["name"]: e for e in by_kind(out, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == {"name": "GF_SECURITY_ADMIN_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "gf-admin", "key": "admin-password"}}}
    assert env["GF_SECURITY_ADMIN_USER"]["valueFrom"]["secretKeyRef"]["key"] == "admin-user"
    assert "value" not in env["GF_SECURITY_ADMIN_PASSWORD"]
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(by_kind(out, "ConfigMap")["data"]["grafana.ini"])
    assert ini.get("auth.anonymous", "enabled") == "false" and ini.get("analytics", "check_for_updates") == "true"
    sources = yaml.safe_load(by_kind(out, "ConfigMap")["data"]["datasources.yaml"])["datasources"]
    assert [(s["type"], s["url"]) for s in sources] == [("prometheus", "http://prometheus.istio-system:9090")]


def test_an_external_prometheus_is_what_grafana_and_kiali_read():
    opts = {"prometheus_url": "http://kps-prometheus.monitoring:9090", "installed": ["grafana", "kiali", "loki"]}
    grafana = observability_addon_manifests(GRAFANA, "grafana", opts)
    sources = yaml.safe_load(by_kind(grafana, "ConfigMap")["data"]["datasources.yaml"])["datasources"]
    assert sources[0]["url"] == "http://kps-prometheus.monitoring:9090"
    assert sources[1]["url"] == "http://loki.istio-system:3100"
    kiali = observability_addon_manifests(KIALI, "kiali", opts)
    conf = yaml.safe_load(by_kind(kiali, "ConfigMap")["data"]["config.yaml"])
    assert conf["external_services"]["prometheus"]["url"] == "http://kps-prometheus.monitoring:9090"


def test_images_registry_and_resources_are_overridable():
    out = observability_addon_manifests(GRAFANA, "grafana", {
        "registry": "mirror.internal:5000/", "resources": {"grafana": {"limits": {"memory": "256Mi"}}}})
    container = by_kind(out, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "mirror.internal:5000/grafana/grafana:12.0.1"
    assert container["resources"] == {"limits": {"memory": "256Mi"}}
    opts = {"images": {"kiali": "quay.io/kiali/kiali:v2.27"}, "registry": "mirror.internal"}
    out = observability_addon_manifests(KIALI, "kiali", opts)
    assert by_kind(out, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "quay.io/kiali/kiali:v2.27"


def test_loadbalancer_exposure_sets_the_source_ranges_on_the_tools_service_only():
    opts = {"exposure": "loadbalancer", "allowed_source_ranges": ["203.0.113.0/24"]}
    out = observability_addon_manifests(GRAFANA, "grafana", opts)
    assert by_kind(out, "Service")["spec"]["type"] == "LoadBalancer"
    assert by_kind(out, "Service")["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    out = observability_addon_manifests(GRAFANA, "grafana", {"exposure": "none"})
    assert by_kind(out, "Service")["spec"]["type"] == "ClusterIP"
    # null: the merge patch removes ranges an earlier loadbalancer run set (refused on a ClusterIP Service).
    assert by_kind(out, "Service")["spec"]["loadBalancerSourceRanges"] is None
    public = observability_addon_manifests(GRAFANA, "grafana", {"exposure": "loadbalancer", "allow_public": True})
    assert public[2]["spec"]["loadBalancerSourceRanges"] is None


def test_a_manifest_without_objects_or_an_unknown_addon_is_an_error():
    with pytest.raises(AnsibleFilterError, match="no Kubernetes object"):
        observability_addon_manifests([None, {}], "jaeger", {})
    with pytest.raises(AnsibleFilterError, match="unknown addon 'zipkin'"):
        observability_addon_manifests(KIALI, "zipkin", {})


# --- results -----------------------------------------------------------------------

def test_access_none_prints_port_forwards_and_secret_names():
    tools = observability_access(["prometheus", "grafana", "kiali", "jaeger"], {"namespace": "istio-system"})
    assert tools["jaeger"]["port_forward"] == "kubectl -n istio-system port-forward svc/tracing 16686:80"
    assert tools["kiali"]["url"] == "http://localhost:20001/kiali/"
    assert tools["grafana"]["admin_secret"] == "istio-system/grafana-admin"
    assert not any(t["reachable_without_login"] for t in tools.values())


def test_access_public_loadbalancer_lists_tools_without_login():
    tools = observability_access(["prometheus", "grafana", "kiali", "jaeger"], {
        "exposure": "loadbalancer", "allow_public": True, "addresses": {"prometheus": "198.51.100.7"}})
    assert tools["prometheus"]["url"] == "http://198.51.100.7:9090/"
    assert [t for t, v in tools.items() if v["reachable_without_login"]] == ["prometheus", "jaeger"]
    tools = observability_access(["kiali"], {"exposure": "loadbalancer", "kiali_auth_strategy": "anonymous"})
    assert tools["kiali"]["reachable_without_login"]


def test_access_gateway_restricted():
    tools = observability_access(["prometheus"], {"exposure": "gateway", "domain": "obs.example.org",
                                                  "jwt_issuer": "https://issuer.example.org"})
    assert tools["prometheus"]["url"] == "https://prometheus.obs.example.org/"
    assert tools["prometheus"]["restricted_to"] == ["JWT from https://issuer.example.org"]
    assert not tools["prometheus"]["reachable_without_login"]


def test_graph_summary_apps_versions_edges_and_missing():
    graph = {"elements": {
        "nodes": [{"data": {"id": "a", "app": "productpage", "version": "v1"}},
                  {"data": {"id": "b", "app": "reviews", "version": "v1"}},
                  {"data": {"id": "c", "app": "reviews", "version": "v2"}},
                  {"data": {"id": "box", "app": "reviews", "isBox": "app"}},
                  {"data": {"id": "d", "app": "ratings", "version": "v1"}}],
        "edges": [{"data": {"source": "a", "target": "b"}}, {"data": {"source": "a", "target": "c"}},
                  {"data": {"source": "c", "target": "d"}}]}}
    summary = observability_graph_summary(graph, ["productpage->reviews", "reviews->ratings",
                                                  "productpage->details"])
    assert summary == {"apps": {"productpage": ["v1"], "ratings": ["v1"], "reviews": ["v1", "v2"]},
                       "edges": ["productpage->reviews", "reviews->ratings"],
                       "missing_edges": ["productpage->details"]}
    assert observability_graph_summary(None, ["a->b"])["missing_edges"] == ["a->b"]


def test_istio_targets_up_and_down():
    answer = {"data": {"activeTargets": [
        {"labels": {"job": "kubernetes-pods", "app": "istiod"}, "scrapeUrl": "http://10.0.0.2:15014/metrics",
         "health": "up", "lastError": ""},
        {"labels": {"job": "kubernetes-pods", "app": "istio-ingressgateway"}, "scrapeUrl": "http://10.0.0.3:15020/x",
         "health": "down", "lastError": "connection refused"},
        {"labels": {"job": "kubernetes-pods", "app": "istio-ingressgateway", "x": "1"},
         "scrapeUrl": "http://10.0.0.4:9/m", "health": "down", "lastError": "refused"},
        {"labels": {"job": "kubernetes-apiservers"}, "scrapeUrl": "https://10.0.0.1:443/metrics", "health": "up"},
    ]}}
    got = observability_istio_targets(answer)
    assert got["istiod_up"] and [t["url"] for t in got["up"]] == ["http://10.0.0.2:15014/metrics"]
    assert not observability_istio_targets({"data": {"activeTargets": []}})["istiod_up"]


# --- persistent storage ------------------------------------------------------------

PROMETHEUS = [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prometheus", "namespace": "istio-system"},
     "spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}, "template": {"spec": {
         "containers": [{"name": "prometheus-server", "image": "prom/prometheus:v3.10.0",
                         "args": ["--storage.tsdb.path=/data"],
                         "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"},
                                          {"name": "storage-volume", "mountPath": "/data", "subPath": ""}]}],
         "volumes": [{"name": "config-volume", "configMap": {"name": "prometheus"}},
                     {"name": "storage-volume", "emptyDir": {}}]}}}},
]


def test_storage_off_keeps_upstreams_empty_dir_and_undoes_a_claim():
    out = observability_addon_manifests(PROMETHEUS, "prometheus", {})
    assert [d["kind"] for d in out] == ["Deployment"]
    pod = by_kind(out, "Deployment")["spec"]["template"]["spec"]
    # nulls: the merge patch removes the claim and fsGroup a run with storage set.
    assert {"name": "storage-volume", "emptyDir": {}, "persistentVolumeClaim": None} in pod["volumes"]
    assert pod["securityContext"] == {"fsGroup": None}


@pytest.mark.parametrize("addon,docs,volume,group", [("prometheus", PROMETHEUS, "storage-volume", 65534),
                                                     ("grafana", None, "storage", 472)])
def test_storage_puts_the_data_volume_on_a_claim(addon, docs, volume, group):
    docs = docs or [dict(GRAFANA[1], spec={"strategy": {"type": "RollingUpdate"}, "template": {"spec": dict(
        GRAFANA[1]["spec"]["template"]["spec"], volumes=[{"name": "config", "configMap": {"name": "grafana"}},
                                                         {"name": "storage", "emptyDir": {}}])}})]
    out = observability_addon_manifests(docs, addon, {"namespace": "observe",
                                                      "storage": {addon: {"size": "20Gi", "storage_class": "fast"}}})
    claim = out[0]
    assert claim == {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": f"{addon}-storage", "namespace": "observe",
                                  "labels": {"app": addon, "app.kubernetes.io/managed-by": "servicemesh.istio.observability"}},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}},
                              "storageClassName": "fast"}}
    deployment = by_kind(out, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert [v for v in pod["volumes"] if v["name"] == volume] == [
        {"name": volume, "persistentVolumeClaim": {"claimName": f"{addon}-storage"}, "emptyDir": None}]
    assert len(pod["volumes"]) == len({v["name"] for v in pod["volumes"]})
    # One ReadWriteOnce volume, one pod at a time.
    assert deployment["spec"]["strategy"] == {"type": "Recreate", "rollingUpdate": None}
    assert pod["securityContext"] == {"fsGroup": group}
    # The cluster's default StorageClass when none is named; the input is not changed.
    again = observability_addon_manifests(docs, addon, {"storage": {addon: {"size": "1Gi"}}})
    assert "storageClassName" not in again[0]["spec"]
    assert {"name": volume, "emptyDir": {}} in docs[0]["spec"]["template"]["spec"]["volumes"]


def test_storage_of_an_addon_whose_manifest_has_no_deployment_is_an_error():
    with pytest.raises(AnsibleFilterError, match="observability_storage.grafana, but the manifest has no Deployment"):
        observability_addon_manifests(GRAFANA[:1], "grafana", {"storage": {"grafana": {"size": "1Gi"}}})


# --- requests at the exposed URLs --------------------------------------------------

TOOLS4 = ["prometheus", "grafana", "kiali", "jaeger"]


def test_gateway_checks_ask_each_tool_at_the_gateway_with_its_host_name():
    checks = observability_exposure_checks(TOOLS4, {
        "exposure": "gateway", "domain": "obs.example.org", "gateway_address": "203.0.113.10",
        "ca_bundle": "/etc/roots.pem", "allowed_source_ranges": ["198.51.100.0/24"]})
    by_tool = {c["tool"]: c for c in checks}
    assert list(by_tool) == TOOLS4
    grafana = by_tool["grafana"]
    assert grafana["url"] == "https://grafana.obs.example.org/" and grafana["status"] == [302]
    assert grafana["external"] == {"host": "grafana.obs.example.org", "address": "203.0.113.10", "scheme": "https",
                                   "port": 443, "ca_path": "/etc/roots.pem", "source_ranges": ["198.51.100.0/24"],
                                   "status_outside": [403]}
    assert by_tool["kiali"]["path"] == "/kiali/api/namespaces" and by_tool["kiali"]["status"] == [401]
    assert by_tool["prometheus"]["status"] == [200] and by_tool["jaeger"]["path"] == "/jaeger/api/services"
    # Only a JWT admits, and the role sends none: refused whatever the source.
    jwt = observability_exposure_checks(["prometheus"], {"exposure": "gateway", "domain": "d.example", "jwt_issuer": "x"})
    assert jwt[0]["status"] == [403] and "source_ranges" not in jwt[0]["external"]


def test_loadbalancer_checks_ask_each_tool_at_its_address_and_expect_no_answer_outside():
    checks = observability_exposure_checks(["grafana", "jaeger"], {
        "exposure": "loadbalancer", "allowed_source_ranges": ["198.51.100.0/24"], "check_source_address": "192.0.2.9",
        "addresses": {"grafana": "203.0.113.21", "jaeger": "203.0.113.22"}})
    assert [c["url"] for c in checks] == ["http://203.0.113.21:3000/", "http://203.0.113.22:80/jaeger/api/services"]
    assert checks[0]["external"] == {"host": "203.0.113.21", "address": "203.0.113.21", "scheme": "http", "port": 3000,
                                     "source_address": "192.0.2.9", "source_ranges": ["198.51.100.0/24"],
                                     "status_outside": [-1]}
    public = observability_exposure_checks(["prometheus"], {"exposure": "loadbalancer", "allow_public": True,
                                                            "addresses": {"prometheus": "203.0.113.20"}})
    assert public[0]["status"] == [200] and "status_outside" not in public[0]["external"]
    assert observability_exposure_checks(TOOLS4, {"exposure": "none"}) == []
    anonymous = observability_exposure_checks(["kiali"], {"exposure": "loadbalancer", "allow_public": True,
                                                          "kiali_auth_strategy": "anonymous"})
    assert anonymous[0]["status"] == [200]


def _result(check, status, inside=True, headers=None, **kw):
    return dict({"item": check, "status": status, "source": "127.0.0.1", "source_inside": inside,
                 "headers": headers or {}}, **kw)


def test_verdict_names_the_tool_the_url_the_source_and_the_answer():
    checks = observability_exposure_checks(TOOLS4, {"exposure": "gateway", "domain": "obs.test",
                                                    "gateway_address": "127.0.100.1",
                                                    "allowed_source_ranges": ["127.0.0.0/8"]})
    by_tool = {c["tool"]: c for c in checks}
    verdict = observability_exposure_verdict({"results": [
        _result(by_tool["grafana"], 302, headers={"location": "/login"}),
        _result(by_tool["kiali"], 401), _result(by_tool["prometheus"], 200), _result(by_tool["jaeger"], 200)]})
    assert all(v["ok"] for v in verdict.values()), verdict
    assert verdict["grafana"]["message"] == ("grafana: https://grafana.obs.test/ from 127.0.0.1 (inside 127.0.0.0/8) "
                                             "answered HTTP 302 to /login; expected: asks for a login (302 to /login).")
    # A redirect somewhere else than the login page is not a login asked for.
    wrong = observability_exposure_verdict([_result(by_tool["grafana"], 302, headers={"location": "/d/home"})])
    assert not wrong["grafana"]["ok"] and "302 to /d/home" in wrong["grafana"]["message"]
    # Outside the ranges the refusal is what must come.
    outside = observability_exposure_verdict([_result(by_tool["prometheus"], 403, inside=False)])
    assert outside["prometheus"]["ok"] and "(outside 127.0.0.0/8)" in outside["prometheus"]["message"]
    assert "refused (403" in outside["prometheus"]["expected"]
    lb = observability_exposure_checks(["prometheus"], {"exposure": "loadbalancer", "allowed_source_ranges": ["192.0.2.0/24"],
                                                        "addresses": {"prometheus": "127.0.100.9"}})
    dropped = observability_exposure_verdict([_result(lb[0], -1, inside=False, error="ConnectionResetError: reset")])
    assert dropped["prometheus"]["ok"] and "(outside 192.0.2.0/24) gave no answer (ConnectionResetError: reset);" \
        in dropped["prometheus"]["message"]


def test_stale_objects_are_what_this_run_does_not_apply():
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "observability", "namespace": "istio-system", "uid": "1"}, "spec": {}}
    jwt = {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
           "metadata": {"name": "observability-jwt", "namespace": "istio-system"}}
    wanted = [{"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "observability", "namespace": "istio-system"}}]
    assert observability_stale_objects([gateway, jwt], wanted) == [
        {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
         "metadata": {"name": "observability-jwt", "namespace": "istio-system"}}]
    # Another exposure: every gateway object goes.
    assert [o["kind"] for o in observability_stale_objects([gateway, jwt], [])] == ["Gateway", "RequestAuthentication"]
    assert observability_stale_objects([], []) == []
