# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the istio_install role installs (plugins/filter/istio_install.py):
releases, Helm values and the objects it waits for, from the role's settings;
the releases' status as kubernetes.core.helm reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.servicemesh.istio.plugins.filter.istio_install import (
    SETTINGS, istio_install_plan, istio_release_status)

REPO_ROOT = Path(__file__).resolve().parents[4]
ROLE = REPO_ROOT / "roles/istio_install"
NS = "istio-system"


def role_settings(**overrides):
    """The settings vars/main.yml passes, from the role's defaults."""
    # The defaults as Ansible resolves them with no collection-wide variable
    # set (they derive from servicemesh_istio_* settings: docs/variables.md).
    defaults = trusted(yaml.safe_load((ROLE / "defaults/main.yml").read_text()))
    templar = Templar(loader=DataLoader(), variables=defaults)
    settings = {key: templar.template(defaults[f"istio_install_{key}"]) for key in SETTINGS}
    settings.update(overrides)
    return settings


def test_the_defaults_install_base_istiod_and_the_gateway_in_istios_order():
    plan = istio_install_plan(role_settings())
    assert plan["charts"] == ["base", "istiod", "gateway"]
    assert plan["releases"] == [
        {"name": "istio-base", "chart": "base", "namespace": NS},
        {"name": "istiod", "chart": "istiod", "namespace": NS},
        {"name": "istio-ingressgateway", "chart": "gateway", "namespace": NS},
    ]
    assert plan["control_plane_objects"] == [
        {"kind": "Deployment", "name": "istiod", "namespace": NS},
        {"kind": "MutatingWebhookConfiguration", "name": "istio-sidecar-injector"},
    ]
    assert plan["helm_values"] == {
        "base": {"global": {"istioNamespace": NS}, "defaultRevision": "default"},
        "istiod": {"profile": "demo", "global": {"istioNamespace": NS},
                   "meshConfig": {"ingressService": "istio-ingressgateway", "ingressSelector": "ingressgateway"}},
        "cni": {"profile": "ambient", "global": {"istioNamespace": NS}},
        "ztunnel": {"profile": "ambient", "global": {"istioNamespace": NS}},
        "gateway": {"labels": {"istio": "ingressgateway"}, "replicaCount": 1,
                    "service": {"type": "LoadBalancer"}, "autoscaling": {"enabled": False}},
    }


def test_ambient_with_a_revision_adds_the_node_agents_and_names_everything_after_the_revision():
    plan = istio_install_plan(role_settings(mode="ambient", revision="1-30", profile="ambient"))
    assert plan["charts"] == ["base", "istiod", "cni", "ztunnel", "gateway"]
    assert [(r["name"], r["chart"]) for r in plan["releases"]] == [
        ("istio-base", "base"), ("istiod-1-30", "istiod"), ("istio-cni", "cni"), ("ztunnel", "ztunnel"),
        ("istio-ingressgateway", "gateway")]
    assert plan["control_plane_objects"] == [
        {"kind": "Deployment", "name": "istiod-1-30", "namespace": NS},
        {"kind": "MutatingWebhookConfiguration", "name": "istio-sidecar-injector-1-30"},
        {"kind": "DaemonSet", "name": "istio-cni-node", "namespace": NS},
        {"kind": "DaemonSet", "name": "ztunnel", "namespace": NS},
    ]
    values = plan["helm_values"]
    assert values["base"]["defaultRevision"] == "1-30"
    assert values["istiod"]["revision"] == "1-30" and values["istiod"]["profile"] == "ambient"
    assert values["ztunnel"] == {"profile": "ambient", "global": {"istioNamespace": NS}, "revision": "1-30"}
    assert "revision" not in values["cni"]
    assert values["gateway"]["revision"] == "1-30"


def test_the_default_profile_sets_no_profile_value():
    assert "profile" not in istio_install_plan(role_settings(profile="default"))["helm_values"]["istiod"]


def test_hub_and_tag_reach_every_chart_s_global_values():
    values = istio_install_plan(role_settings(hub="mirror.example/istio", tag="1.30.4-distroless"))["helm_values"]
    for chart in ("base", "istiod", "cni", "ztunnel"):
        assert values[chart]["global"] == {"istioNamespace": NS, "hub": "mirror.example/istio",
                                           "tag": "1.30.4-distroless"}, chart


@pytest.mark.parametrize("enabled", [False, "no", "false", 0])
def test_without_the_gateway_there_is_no_gateway_release(enabled):
    plan = istio_install_plan(role_settings(gateway_enabled=enabled))
    assert plan["charts"] == ["base", "istiod"]
    assert [r["chart"] for r in plan["releases"]] == ["base", "istiod"]
    # istiod still names the gateway it would route through.
    assert plan["helm_values"]["istiod"]["meshConfig"] == {"ingressService": "istio-ingressgateway",
                                                           "ingressSelector": "ingressgateway"}


def test_the_gateway_service_and_its_own_namespace():
    plan = istio_install_plan(role_settings(
        gateway_enabled="yes", gateway_namespace="istio-ingress", gateway_name="ingress", gateway_label="edge",
        gateway_service_type="LoadBalancer", gateway_load_balancer_ip="203.0.113.7",
        gateway_service_annotations={"service.beta.kubernetes.io/e2e-reserved-ip": "203.0.113.7"},
        gateway_load_balancer_source_ranges=["198.51.100.0/24"]))
    assert plan["releases"][-1] == {"name": "ingress", "chart": "gateway", "namespace": "istio-ingress"}
    assert plan["helm_values"]["gateway"]["service"] == {
        "type": "LoadBalancer", "loadBalancerIP": "203.0.113.7",
        "annotations": {"service.beta.kubernetes.io/e2e-reserved-ip": "203.0.113.7"},
        "loadBalancerSourceRanges": ["198.51.100.0/24"]}
    assert plan["helm_values"]["gateway"]["labels"] == {"istio": "edge"}
    assert plan["helm_values"]["istiod"]["meshConfig"] == {"ingressService": "ingress", "ingressSelector": "edge"}


@pytest.mark.parametrize(("replicas", "most", "autoscaling"), [
    (1, 0, {"enabled": False}),
    (3, 3, {"enabled": False}),
    (2, 5, {"enabled": True, "minReplicas": 2, "maxReplicas": 5}),
    ("2", "5", {"enabled": True, "minReplicas": 2, "maxReplicas": 5}),  # extra vars given as key=value
])
def test_the_gateway_autoscales_only_above_its_replica_count(replicas, most, autoscaling):
    values = istio_install_plan(role_settings(gateway_replicas=replicas, gateway_autoscale_max=most))["helm_values"]
    assert values["gateway"]["autoscaling"] == autoscaling
    assert values["gateway"]["replicaCount"] == int(replicas)


def test_extra_values_merge_over_the_role_s_own_recursively_lists_replaced():
    extra = {"base": {"global": {"hub": "x", "extra": {"a": 1}}},
             "istiod": {"meshConfig": {"accessLogFile": "/dev/stdout"}, "pilot": {"env": {"A": "1"}},
                        "profile": "preview"},
             "gateway": {"service": {"type": "NodePort", "ports": [{"port": 80}]}},
             "cni": None}
    plan = istio_install_plan(role_settings(extra_values=extra, gateway_load_balancer_source_ranges=["10.0.0.0/8"]))
    values = plan["helm_values"]
    assert values["base"] == {"global": {"istioNamespace": NS, "hub": "x", "extra": {"a": 1}},
                              "defaultRevision": "default"}
    assert values["istiod"] == {
        "profile": "preview", "global": {"istioNamespace": NS},
        "meshConfig": {"ingressService": "istio-ingressgateway", "ingressSelector": "ingressgateway",
                       "accessLogFile": "/dev/stdout"},
        "pilot": {"env": {"A": "1"}}}
    assert values["gateway"]["service"] == {"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"],
                                            "ports": [{"port": 80}]}
    assert values["cni"] == {"profile": "ambient", "global": {"istioNamespace": NS}}
    # The merge copies: the role's settings are left as they were.
    assert extra["base"] == {"global": {"hub": "x", "extra": {"a": 1}}}
    values["base"]["global"]["hub"] = "changed"
    assert values["istiod"]["global"] == {"istioNamespace": NS}


def test_missing_settings_take_the_role_s_defaults_and_unknown_ones_are_refused():
    assert istio_install_plan({"namespace": NS}) == istio_install_plan(role_settings())
    with pytest.raises(AnsibleFilterError, match="unknown settings gateway_replica "):
        istio_install_plan({"namespace": NS, "gateway_replica": 2})
    with pytest.raises(AnsibleFilterError, match="namespace is required"):
        istio_install_plan({"mode": "sidecar"})
    with pytest.raises(AnsibleFilterError, match="gateway_replicas must be an integer, got 'two'"):
        istio_install_plan(role_settings(gateway_replicas="two"))
    with pytest.raises(AnsibleFilterError, match="expects a dict of settings"):
        istio_install_plan([NS])


def test_vars_main_passes_every_setting_and_nothing_else():
    role_vars = yaml.safe_load((ROLE / "vars/main.yml").read_text())
    assert set(role_vars["__istio_install_settings"]) == set(SETTINGS)
    for key, value in role_vars["__istio_install_settings"].items():
        assert value == "{{ istio_install_%s }}" % key


def trusted(value):
    """Variables as Ansible loads them from a role's files: their strings may be templates."""
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return trust_as_template(value) if isinstance(value, str) else value


def test_the_role_s_vars_render_through_ansible():
    role_vars = yaml.safe_load((ROLE / "vars/main.yml").read_text())
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables = trusted({**defaults, **role_vars, "istio_install_revision": "canary",
                         "istio_install_gateway_enabled": "false", "item": {"chart": "istiod"}})
    templar = Templar(loader=DataLoader(), variables=variables)
    plan = templar.template(trust_as_template("{{ __istio_install_plan }}"))
    assert plan["charts"] == ["base", "istiod"]
    assert plan["releases"][1] == {"name": "istiod-canary", "chart": "istiod", "namespace": NS}
    # As the install loop and the gateway task read them.
    assert templar.template(trust_as_template("{{ __istio_install_plan.helm_values[item.chart].revision }}")) \
        == "canary"
    assert templar.template(trust_as_template("{{ __istio_install_plan.helm_values.gateway.revision }}")) == "canary"


# ---------------------------------------------------------------------------
# istio_release_status
# ---------------------------------------------------------------------------

def helm_result(name, chart, status="deployed", namespace=NS, revision="1"):
    """A kubernetes.core.helm result, as registered in the install loop."""
    return {"changed": True, "failed": False, "item": {"name": name, "chart": chart.rsplit("-", 1)[0]},
            "command": f"helm upgrade -i {name}",
            "status": {"name": name, "namespace": namespace, "revision": revision, "status": status,
                       "chart": chart, "app_version": chart.rsplit("-", 1)[1], "updated": "2026-03-01 10:00:00 +0000 UTC",
                       "values": {}}}


RELEASES = istio_install_plan(role_settings())["releases"]


def test_every_release_deployed_at_the_pinned_version():
    results = [helm_result("istio-base", "base-1.30.4"), helm_result("istiod", "istiod-1.30.4"),
               helm_result("istio-ingressgateway", "gateway-1.30.4", revision="3")]
    assert istio_release_status(RELEASES, results, "1.30.4") == [
        {"name": "istio-base", "namespace": NS, "status": "deployed", "chart": "base-1.30.4",
         "expected": "base-1.30.4", "ok": True},
        {"name": "istiod", "namespace": NS, "status": "deployed", "chart": "istiod-1.30.4",
         "expected": "istiod-1.30.4", "ok": True},
        {"name": "istio-ingressgateway", "namespace": NS, "status": "deployed", "chart": "gateway-1.30.4",
         "expected": "gateway-1.30.4", "ok": True},
    ]


def test_a_failed_release_an_old_chart_and_a_missing_status_are_not_ok():
    results = [helm_result("istio-base", "base-1.29.2"), helm_result("istiod", "istiod-1.30.4", status="FAILED"),
               {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}]
    status = istio_release_status(RELEASES, results, "1.30.4")
    assert [(s["status"], s["chart"], s["ok"]) for s in status] == [
        ("deployed", "base-1.29.2", False), ("failed", "istiod-1.30.4", False), ("missing", "no chart", False)]


def test_releases_without_a_result_are_left_out():
    assert istio_release_status(RELEASES, [helm_result("istio-base", "base-1.30.4")], "1.30.4")[0]["ok"] is True
    assert len(istio_release_status(RELEASES, [helm_result("istio-base", "base-1.30.4")], "1.30.4")) == 1
    with pytest.raises(AnsibleFilterError, match="expects the list of releases"):
        istio_release_status(RELEASES, None, "1.30.4")
