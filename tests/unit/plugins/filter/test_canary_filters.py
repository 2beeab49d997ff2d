# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary role's judgements (plugins/filter/canary.py): inputs, the order of a change, other owners'
VirtualServices, weighted subsets without a Ready pod, the binomial band of a measured split and the metric gate
of a progressive step. The messages are the ones tests/cluster/test_canary.py looks for."""

from __future__ import annotations

import math

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.servicemesh.istio.plugins.filter.canary import (
    as_weight, canary_classify, canary_current_weights, canary_foreign_virtual_services, canary_gate,
    canary_http_route, canary_input_errors, canary_plan, canary_prometheus_counts, canary_promoted_as_stable,
    canary_promoted_subsets, canary_remaining_steps, canary_resilience_expect, canary_split_verdict,
    canary_step_weights, canary_traffic_policy, canary_unready_subsets, canary_weights)

NS = "bookinfo"
SUBSETS = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]
GOOD = {"service": "reviews", "namespace": NS, "subsets": SUBSETS, "weights": {"v1": 80, "v2": 20}, "mode": "static",
        "stable_subset": "v1", "canary_subset": "v2", "steps": [10, 20, 50, 100], "interval": 60, "threshold": 2,
        "success_rate_min": 99, "latency_p99_max_ms": 500, "min_requests": 20, "measure_requests": 200,
        "measure_sigma": 3, "measure_source": "requests", "measure_window": 60, "resilience": {}}


def render(expression, **variables):
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(expression))


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (100, 100), ("20", 20), (" 7 ", 7), (True, None), (20.0, None), ("20.5", None), (-1, None), (101, None),
    (None, None), ("x", None)])
def test_as_weight(value, expected):
    assert as_weight(value) == expected


def test_good_inputs_have_no_error():
    assert canary_input_errors(GOOD) == []
    assert canary_input_errors({**GOOD, "mode": "progressive"}) == []


@pytest.mark.parametrize(("change", "message"), [
    ({"weights": {"v1": 80, "v2": 30}}, "canary_weights must sum to 100, got 110 (v1=80 + v2=30)"),
    ({"weights": {"v1": 80.5, "v2": 19.5}}, "canary_weights.v1 must be an integer from 0 to 100, got 80.5"),
    ({"weights": {"v1": 101, "v2": -1}}, "canary_weights.v2 must be an integer from 0 to 100, got -1"),
    ({"weights": {"v1": True, "v2": 99}}, "canary_weights.v1 must be an integer from 0 to 100, got True"),
    ({"weights": {}}, "canary_weights names no destination"),
    ({"weights": [80, 20]}, "canary_weights must be a mapping of subset name to weight"),
    ({"weights": {"v1": 50, "v9": 50}}, "canary_weights.v9 names a subset that canary_subsets does not define"),
    ({"subsets": [{"name": "V_1", "labels": {"version": "v1"}}], "weights": {"V_1": 100}},
     "canary_subsets[0].name 'V_1' is not a valid subset name"),
    ({"subsets": [{"name": "v1", "labels": {}}], "weights": {"v1": 100}}, "canary_subsets[0].labels must be a non-empty"),
    ({"subsets": SUBSETS + [SUBSETS[0]]}, "canary_subsets[2].name v1 is defined twice"),
    ({"subsets": []}, "canary_subsets must be a non-empty list"),
    ({"service": "Reviews"}, "canary_service 'Reviews' is not a valid name"),
    ({"mode": "progressive", "steps": [50, 20, 100]}, "canary_steps must increase"),
    ({"mode": "progressive", "steps": [10, 50]}, "canary_steps must end at 100"),
    ({"mode": "progressive", "steps": [0, 100]}, "canary_steps must be a non-empty list of percentages from 1 to 100"),
    ({"mode": "progressive", "canary_subset": "v7"}, "canary_canary_subset 'v7' is not one of canary_subsets"),
    ({"mode": "progressive", "canary_subset": "v1"}, "canary_stable_subset and canary_canary_subset must differ"),
    ({"mode": "progressive", "threshold": 0}, "canary_threshold must be a number of at least 1, got 0"),
    ({"mode": "progressive", "success_rate_min": 101}, "canary_success_rate_min must be a number from 0 to 100"),
    ({"measure_requests": 0}, "canary_measure_requests must be a positive integer"),
    ({"measure_sigma": 0}, "canary_measure_sigma must be a positive number"),
    ({"measure_source": "envoy"}, "canary_measure_source must be one of requests, prometheus, got 'envoy'"),
    ({"measure_window": 0}, "canary_measure_window must be a positive number of seconds, got 0"),
    ({"measure_window": "1m"}, "canary_measure_window must be a positive number of seconds, got '1m'"),
    ({"resilience": {"timeout": "10 seconds"}}, "canary_resilience.timeout must be a duration"),
    ({"resilience": {"retries": {"attempts": 101}}}, "canary_resilience.retries.attempts must be an integer from 0 to 100"),
    ({"resilience": {"retries": {"attempts": 3, "per_try_timeout": "2"}}}, "canary_resilience.retries.per_try_timeout"),
    ({"resilience": {"retries": {"attempts": 3, "retry_on": "5xx; reset"}}}, "canary_resilience.retries.retry_on"),
    ({"resilience": {"connection_pool": {"max_connections": 0}}},
     "canary_resilience.connection_pool.max_connections must be a positive integer"),
    ({"resilience": {"outlier_detection": {"max_ejection_percent": 120}}},
     "canary_resilience.outlier_detection.max_ejection_percent must be an integer from 0 to 100"),
    ({"resilience": {"circuit": {}}}, "canary_resilience.circuit is not known"),
])
def test_bad_inputs_name_their_variable(change, message):
    errors = canary_input_errors({**GOOD, **change})
    assert any(message in e for e in errors), errors


def test_the_survey_weights_are_named():
    errors = canary_input_errors({**GOOD, "weights": {"v1": 60, "v2": 50},
                                  "weights_variable": "canary_stable_weight/canary_new_weight"})
    assert errors == ["canary_stable_weight/canary_new_weight must sum to 100, got 110 (v1=60 + v2=50)"]


def test_weights_normalised_and_refused():
    assert canary_weights({"v1": "80", "v2": 20}) == {"v1": 80, "v2": 20}
    with pytest.raises(AnsibleFilterError, match="weight of v1 is not an integer"):
        canary_weights({"v1": 1.5})


def vs(name, hosts, namespace=NS, gateways=None, owned=False):
    labels = {"app.kubernetes.io/managed-by": "servicemesh.istio", "servicemesh.istio/role": "canary"} if owned else {}
    spec = {"hosts": hosts}
    if gateways is not None:
        spec["gateways"] = gateways
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}


def test_foreign_virtual_services():
    found = canary_foreign_virtual_services([
        vs("reviews", ["reviews"], owned=True),                               # ours
        vs("reviews-other", ["reviews"]),                                     # same host, not ours
        vs("elsewhere", ["reviews.bookinfo.svc.cluster.local"], namespace="x"),  # FQDN from another namespace
        vs("short-elsewhere", ["reviews"], namespace="x"),                    # another namespace's reviews
        vs("gateway-only", ["reviews.bookinfo.svc.cluster.local"], gateways=["bookinfo-gateway"]),
        vs("gateway-and-mesh", ["reviews.bookinfo"], gateways=["bookinfo-gateway", "mesh"]),
        vs("wildcard", ["*.bookinfo.svc.cluster.local"]),
        vs("reviews", ["reviews"]),                                           # our name without our labels
    ], "reviews", NS, "reviews")
    assert found == ["bookinfo/reviews-other (hosts reviews)",
                     "x/elsewhere (hosts reviews.bookinfo.svc.cluster.local)",
                     "bookinfo/gateway-and-mesh (hosts reviews.bookinfo)",
                     "bookinfo/wildcard (hosts *.bookinfo.svc.cluster.local)",
                     "bookinfo/reviews (hosts reviews)"]


def pod(name, labels, ready=True, phase="Running", deleting=False):
    meta = {"name": name, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase,
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_unready_subsets():
    service = {"spec": {"selector": {"app": "reviews"}}}
    pods = [pod("r1", {"app": "reviews", "version": "v1"}),
            pod("r2", {"app": "reviews", "version": "v2"}, ready=False),
            pod("r2b", {"app": "reviews", "version": "v2"}, deleting=True),
            pod("other", {"app": "ratings", "version": "v3"})]
    subsets = SUBSETS + [{"name": "v3", "labels": {"version": "v3"}}]
    assert canary_unready_subsets(pods, service, subsets, {"v1": 80, "v2": 20}) == [
        "v2 (pods labelled app=reviews, version=v2)"]
    assert canary_unready_subsets(pods, service, subsets, {"v1": 100, "v2": 0, "v3": 0}) == []
    assert canary_unready_subsets(pods, service, subsets, {"v1": 50, "v3": 50}) == [
        "v3 (pods labelled app=reviews, version=v3)"]


def test_plan_orders_make_before_break():
    current = {"spec": {"subsets": SUBSETS}}
    v3 = {"name": "v3", "labels": {"version": "v3"}}
    assert canary_plan({}, SUBSETS, {"v1": 80, "v2": 20})["order"] == "dr_vs"
    assert canary_plan(current, SUBSETS + [v3], {"v1": 80, "v3": 20})["order"] == "dr_vs"
    dropped = canary_plan(current, [SUBSETS[0]], {"v1": 100})
    assert dropped["order"] == "vs_dr" and dropped["removed"] == ["v2"]
    both = canary_plan(current, [SUBSETS[0], v3], {"v1": 50, "v3": 50})
    assert both["order"] == "dr_vs_dr" and both["added"] == ["v3"] and both["removed"] == ["v2"]
    assert [s["name"] for s in both["union_subsets"]] == ["v1", "v3", "v2"]
    assert [s["name"] for s in both["subsets"]] == ["v1", "v3"]  # the DestinationRule once the routes left v2


def test_current_weights():
    assert canary_current_weights({}, "reviews") == {}
    spec = {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                                         {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]}]}}
    assert canary_current_weights(spec, "reviews") == {"v1": 90, "v2": 10}
    one = {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}}
    assert canary_current_weights(one, "reviews") == {"v2": 100}


def test_traffic_policy_and_route():
    assert canary_traffic_policy({}, "") == {}
    assert canary_traffic_policy({}, "ISTIO_MUTUAL") == {"tls": {"mode": "ISTIO_MUTUAL"}}
    with pytest.raises(AnsibleFilterError, match="ISTIO_MUTUAL or empty"):
        canary_traffic_policy({}, "DISABLE")
    policy = canary_traffic_policy({"connection_pool": {"max_connections": 100, "http1_max_pending_requests": 10},
                                    "outlier_detection": {"consecutive_5xx_errors": 5, "interval": "10s",
                                                          "base_ejection_time": "30s"}}, "ISTIO_MUTUAL")
    assert policy == {"tls": {"mode": "ISTIO_MUTUAL"},
                      "connectionPool": {"tcp": {"maxConnections": 100}, "http": {"http1MaxPendingRequests": 10}},
                      "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s"}}
    route = canary_http_route("reviews", {"v1": 80, "v2": 20},
                              {"timeout": "10s", "retries": {"attempts": 3, "per_try_timeout": "2s", "retry_on": "5xx"}})
    assert route == [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}],
                      "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"}}]


def test_resilience_expect_is_what_the_templates_write():
    """What the role then asks proxy_config_info to find: the route's part for
    the Service's name, the traffic policy for its FQDN; nothing for an unset part."""
    resilience = {"timeout": "10s", "retries": {"attempts": 3, "per_try_timeout": "2s", "retry_on": "5xx"},
                  "connection_pool": {"max_connections": 100, "http1_max_pending_requests": None},
                  "outlier_detection": {"consecutive_5xx_errors": 5, "interval": "10s"}}
    host = "reviews.bookinfo.svc.cluster.local"
    assert canary_resilience_expect(resilience, "reviews", host) == {
        "routes": [{"host": "reviews", "timeout": "10s",
                    "retries": {"attempts": 3, "per_try_timeout": "2s", "retry_on": "5xx"}}],
        "traffic_policies": [{"host": host, "connection_pool": {"max_connections": 100},
                              "outlier_detection": {"consecutive_5xx_errors": 5, "interval": "10s"}}]}
    # Retries without attempts: the VirtualService gets attempts 0 (canary_http_route), so expect that.
    assert canary_resilience_expect({"retries": {"retry_on": "5xx"}}, "reviews", host) == {
        "routes": [{"host": "reviews", "retries": {"attempts": 0, "retry_on": "5xx"}}], "traffic_policies": []}
    assert canary_http_route("reviews", {"v1": 100}, {"retries": {"retry_on": "5xx"}})[0]["retries"] == {
        "attempts": 0, "retryOn": "5xx"}
    nothing = {"routes": [], "traffic_policies": []}
    assert canary_resilience_expect({"outlier_detection": {}}, "reviews", host) == nothing
    assert canary_resilience_expect({}, "reviews", host) == {"routes": [], "traffic_policies": []}


@pytest.mark.parametrize(("body", "version"), [
    ('<blockquote>Great</blockquote><font color="black"><span class="glyphicon glyphicon-star">', "v2"),
    ('<blockquote>Great</blockquote><font color="red"><span class="glyphicon glyphicon-star">', "v3"),
    ("<blockquote>Great</blockquote><small>Reviewer1</small>", "v1"),
    ("Error fetching product reviews!", "unclassified"),
    (None, "unclassified"),
])
def test_classify(body, version):
    assert canary_classify(body) == version


def test_split_verdict_band():
    verdict = canary_split_verdict({"v1": 160, "v2": 40}, {"v1": 80, "v2": 20})
    assert verdict["ok"] and verdict["total"] == 200
    spread = 3 * math.sqrt(0.8 * 0.2 / 200)
    assert verdict["subsets"][0]["low"] == round(0.8 - spread, 4) and verdict["subsets"][0]["high"] == round(0.8 + spread, 4)
    assert verdict["lines"][0] == "v1: 160 of 200 (80.0%), expected 80.0%, band 71.5%..88.5% (3 sigma): inside"
    assert canary_split_verdict({"v1": 185, "v2": 15}, {"v1": 80, "v2": 20})["ok"] is False  # 92.5% > 88.5%
    assert verdict["verdict"] == "pass"
    assert canary_split_verdict({"v1": 185, "v2": 15}, {"v1": 80, "v2": 20})["verdict"] == "fail"
    assert canary_split_verdict({}, {"v1": 80, "v2": 20}) == {
        "total": 0, "ok": False, "verdict": "undecided",
        "subsets": canary_split_verdict({}, {"v1": 80, "v2": 20})["subsets"], "lines": ["no request was classified"]}


@pytest.mark.parametrize(("counts", "verdict"), [({}, "undecided"), ({"v1": 0, "v2": 0}, "undecided"),
                                                 ({"v1": 80, "v2": 19}, "undecided"), ({"v1": 80, "v2": 20}, "pass"),
                                                 ({"v1": 100, "v2": 0}, "fail")])
def test_split_verdict_too_few_requests_cannot_decide(counts, verdict):
    """Fewer than min_total requests counted (no traffic in the window): undecided, never a pass, even when the
    few requests happen to match the weights."""
    result = canary_split_verdict(counts, {"v1": 80, "v2": 20}, 3, SUBSETS, 100)
    assert result["verdict"] == verdict and result["ok"] is (verdict == "pass"), result
    if verdict == "undecided":
        assert result["lines"] == ["cannot decide: %d requests counted, at least 100 needed" % sum(counts.values())]


def series(version, values, code="200"):
    return {"metric": {"__name__": "istio_requests_total", "destination_version": version, "response_code": code},
            "values": [[1764460000.0 + 15 * i, str(v)] for i, v in enumerate(values)]}


def test_prometheus_counts_are_the_raw_increase_by_version():
    """First to last sample of each series, summed by destination_version; a counter reset counts from zero;
    nothing is extrapolated to the window's edges."""
    answer = {"status": "success", "data": {"resultType": "matrix", "result": [
        series("v1", [100, 160, 220]), series("v1", [3, 3, 5], code="503"),  # 120 + 2
        series("v2", [50, 65, 10, 20]),  # 15, then a reset (restart): 10 + 10
        series("v3", [7]),  # one sample: no increase measurable
        {"metric": {"response_code": "200"}, "values": [[1.0, "1"], [16.0, "4"]]},
    ]}}
    assert canary_prometheus_counts(answer) == {"v1": 122, "v2": 35, "v3": 0, "unknown": 3}
    assert canary_prometheus_counts({"status": "success", "data": {"resultType": "matrix", "result": []}}) == {}
    with pytest.raises(AnsibleFilterError, match="range-vector query"):
        canary_prometheus_counts({"status": "success", "data": {"resultType": "vector", "result": []}})
    with pytest.raises(AnsibleFilterError, match="Prometheus answered error: parse error"):
        canary_prometheus_counts({"status": "error", "error": "parse error"})
    verdict = canary_split_verdict(canary_prometheus_counts(answer), {"v1": 80, "v2": 20}, 3, SUBSETS, 100)
    assert verdict["verdict"] == "fail" and verdict["total"] == 160, verdict
    # v3's series did not increase: not listed; the requests without a version count against the split.
    assert len(verdict["lines"]) == 3, verdict["lines"]
    assert verdict["lines"][2].startswith("unknown: 3 of 160") and verdict["lines"][2].endswith("OUTSIDE")


def test_promoted_as_stable():
    promoted = canary_promoted_subsets(SUBSETS, "v1", "v2")
    assert promoted == [{"name": "v1", "labels": {"version": "v2"}}, {"name": "v2", "labels": {"version": "v2"}}]
    assert SUBSETS[0]["labels"] == {"version": "v1"}  # the input is not changed
    with pytest.raises(AnsibleFilterError, match="v1 and v9 must both be subsets"):
        canary_promoted_subsets(SUBSETS, "v1", "v9")
    rule = {"spec": {"subsets": promoted}}
    assert canary_promoted_as_stable(rule, {"v1": 100, "v2": 0}, "v1", "v2", SUBSETS)
    assert not canary_promoted_as_stable(rule, {"v1": 0, "v2": 100}, "v1", "v2", SUBSETS)  # not yet relabelled
    assert not canary_promoted_as_stable({"spec": {"subsets": SUBSETS}}, {"v1": 100, "v2": 0}, "v1", "v2", SUBSETS)
    assert not canary_promoted_as_stable({}, {}, "v1", "v2", SUBSETS)
    # The next release: the stable subset now carries v2's labels in the inputs, the canary v3's.
    following = [{"name": "v1", "labels": {"version": "v2"}}, {"name": "v2", "labels": {"version": "v3"}}]
    assert not canary_promoted_as_stable(rule, {"v1": 100, "v2": 0}, "v1", "v2", following)


def test_split_verdict_counts_by_version_and_reports_strangers():
    subsets = [{"name": "stable", "labels": {"version": "v1"}}, {"name": "canary", "labels": {"version": "v2"}}]
    ok = canary_split_verdict({"v1": 100, "v2": 100}, {"stable": 50, "canary": 50}, 3, subsets)
    assert ok["ok"] and [r["subset"] for r in ok["subsets"]] == ["stable", "canary"]
    wrong = canary_split_verdict({"v1": 160, "v3": 40}, {"v1": 80, "v2": 20}, 3, SUBSETS)
    assert not wrong["ok"]
    assert wrong["lines"][1] == "v2: 0 of 200 (0.0%), expected 20.0%, band 11.5%..28.5% (3 sigma): OUTSIDE"
    assert wrong["lines"][2] == "v3: 40 of 200 (20.0%), expected 0.0%, band 0.0%..0.0% (3 sigma): OUTSIDE"
    # 100 calls within +-10 points, as Istio's own tests accept: 3 sigma of 100 calls at 20% is 12 points.
    assert canary_split_verdict({"v1": 71, "v2": 29}, {"v1": 80, "v2": 20}, 3)["ok"]


def answer(value):
    return {"status": "success", "data": {"resultType": "vector", "result": [] if value is None else
                                          [{"metric": {}, "value": [1764460000.0, str(value)]}]}}


def test_gate():
    good = canary_gate(answer(100), answer(0), answer(120), 20, 99, 500)
    assert good["verdict"] == "pass" and good["success_rate"] == 100.0
    assert good["message"] == "success rate 100.00% (min 99%), p99 120 ms (max 500 ms), 100 requests"
    bad = canary_gate(answer(100), answer(10), answer(120), 20, 99, 500)
    assert bad["verdict"] == "fail" and bad["message"].startswith("success rate 90.00% below 99%")
    slow = canary_gate(answer(100), answer(None), answer(900), 20, 99, 500)
    assert slow["verdict"] == "fail" and "p99 900 ms above 500 ms" in slow["message"]
    none = canary_gate(answer(None), answer(None), answer(None), 20, 99, 500)
    assert none["verdict"] == "undecided"
    assert none["message"] == "cannot decide: 0 requests to the canary in the window, at least 20 needed"
    few = canary_gate(answer(5), answer(0), answer(10), 20, 99, 500)
    assert few["verdict"] == "undecided"
    nan = canary_gate(answer(100), answer(0), answer("NaN"), 20, 99, 500)
    assert nan["verdict"] == "fail" and "no p99 latency sample" in nan["message"]


def test_steps_resume_from_the_current_weights():
    assert canary_remaining_steps({}, [10, 20, 50, 100], "v2") == [10, 20, 50, 100]
    assert canary_remaining_steps({"v1": 80, "v2": 20}, [10, 20, 50, 100], "v2") == [50, 100]
    assert canary_remaining_steps({"v2": 100}, [10, 20, 50, 100], "v2") == []
    assert canary_step_weights(20, "v1", "v2", SUBSETS + [{"name": "v3", "labels": {}}]) == {"v1": 80, "v2": 20, "v3": 0}


def test_filters_by_fqcn():
    assert render("{{ {'v1': '80', 'v2': 20} | servicemesh.istio.canary_weights }}") == {"v1": 80, "v2": 20}
    assert render("{{ p | servicemesh.istio.canary_input_errors }}", p={**GOOD, "weights": {"v1": 1}}) == [
        "canary_weights must sum to 100, got 1 (v1=1)"]
