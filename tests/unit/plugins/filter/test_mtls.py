# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mtls_verify role's judgements (plugins/filter/mtls.py), on objects shaped
as kubernetes.core.k8s_info and k8s_log return them. The messages are the ones
the cluster tests (tests/cluster/test_mtls_verify.py) look for."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.servicemesh.istio.plugins.filter.mtls import (
    NO_OUTPUT, client_outcome, client_timeout_message, destination_rule_risks, mtls_proof_verdict)

NS = "bookinfo"
PLAINTEXT, SIDECAR = "mtls-verify-plaintext", "mtls-verify-sidecar"
ADVICE = ("\nOn a real cluster look for image pulls (set mtls_verify_client_registry to a mirror), scheduling, or a\n"
          "sidecar that never became ready; raise mtls_verify_client_timeout for slow pulls.")


def render(expression, **variables):
    """The expression as a task would template it, the filters found by their FQCN."""
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(expression))


# ---------------------------------------------------------------------------
# destination_rule_risks
# ---------------------------------------------------------------------------

def destination_rule(namespace, name, host, **spec):
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1042",
                     "creationTimestamp": "2026-03-01T10:00:00Z", "generation": 1},
        "spec": {"host": host, **spec},
    }


def tls(mode):
    return {"tls": {"mode": mode}}


def test_a_rule_disabling_tls_for_a_short_host_is_named_as_the_cluster_test_expects():
    rules = [destination_rule(NS, "productpage-plaintext", "productpage", trafficPolicy=tls("DISABLE"))]
    assert destination_rule_risks(rules, "namespace", NS) == [
        f"{NS}/productpage-plaintext (host productpage): tls.mode DISABLE"]


def test_istio_mutual_and_unset_modes_are_no_risk():
    rules = [destination_rule(NS, "mutual", "reviews", trafficPolicy=tls("ISTIO_MUTUAL")),
             destination_rule(NS, "mutual-tls", "reviews", trafficPolicy=tls("MUTUAL")),
             destination_rule(NS, "lb-only", "ratings", trafficPolicy={"loadBalancer": {"simple": "ROUND_ROBIN"}}),
             destination_rule(NS, "bare", "details")]
    assert destination_rule_risks(rules, "namespace", NS) == []


def test_every_level_is_checked_in_order_and_named():
    rule = destination_rule(
        NS, "reviews", "reviews",
        trafficPolicy={"tls": {"mode": "SIMPLE"},
                       "portLevelSettings": [{"port": {"number": 9080}, "tls": {"mode": "DISABLE"}},
                                             {"port": {"number": 9443}, "tls": {"mode": "ISTIO_MUTUAL"}},
                                             {"tls": {"mode": "DISABLE"}}]},
        subsets=[{"name": "v1", "labels": {"version": "v1"}},
                 {"name": "v2", "labels": {"version": "v2"},
                  "trafficPolicy": {"tls": {"mode": "DISABLE"},
                                    "portLevelSettings": [{"port": {"number": 9080}, "tls": {"mode": "SIMPLE"}}]}},
                 {"name": "v3", "trafficPolicy": {"portLevelSettings": [{"port": {"number": 80}, **tls("SIMPLE")}]}}])
    assert destination_rule_risks([rule], "namespace", NS) == [
        f"{NS}/reviews (host reviews): tls.mode SIMPLE",
        f"{NS}/reviews (host reviews, port 9080): tls.mode DISABLE",
        f"{NS}/reviews (host reviews, port ?): tls.mode DISABLE",
        f"{NS}/reviews (host reviews, subset v2): tls.mode DISABLE",
        f"{NS}/reviews (host reviews, subset v2, port 9080): tls.mode SIMPLE",
        f"{NS}/reviews (host reviews, subset v3, port 80): tls.mode SIMPLE",
    ]


def test_null_policies_and_lists_count_as_absent():
    rules = [destination_rule(NS, "nulls", "ratings", trafficPolicy=None, subsets=None),
             destination_rule(NS, "null-tls", "ratings", trafficPolicy={"tls": None, "portLevelSettings": None}),
             destination_rule(NS, "null-subset", "ratings", subsets=[{"name": "v1", "trafficPolicy": None}])]
    assert destination_rule_risks(rules, "namespace", NS) == []


# Which hosts are in scope: (host, the rule's namespace) -> in scope with scope
# namespace (namespace bookinfo), in scope with scope mesh.
HOSTS = [
    ("productpage", NS, True, True),
    ("ratings", "other", False, True),                    # a short name resolves in the rule's namespace
    ("details.bookinfo", "other", True, False),           # <svc>.<ns>: the mesh scope wants .svc
    ("details.bookinfo.svc", "other", True, True),
    ("details.bookinfo.svc.cluster.local", "other", True, True),
    ("details.other.svc.cluster.local", NS, False, True),
    ("ratings.bookinfo.svc.example.org", NS, False, False),  # another cluster domain
    ("www.example.com", NS, False, False),                # outside the cluster
    ("*", NS, True, True),
    ("*.local", NS, True, True),
    ("*.cluster.local", NS, True, True),
    ("*.bookinfo.svc.cluster.local", NS, True, True),
    ("*.other.svc.cluster.local", NS, False, True),
    ("*.example.com", NS, False, False),
    ("a.b.bookinfo.svc.cluster.local", NS, False, True),  # no Service name has a dot
]


@pytest.mark.parametrize(("host", "rule_namespace", "in_namespace", "in_mesh"), HOSTS, ids=[h[0] for h in HOSTS])
def test_hosts_in_scope(host, rule_namespace, in_namespace, in_mesh):
    rules = [destination_rule(rule_namespace, "dr", host, trafficPolicy=tls("DISABLE"))]
    expected = [f"{rule_namespace}/dr (host {host}): tls.mode DISABLE"]
    assert destination_rule_risks(rules, "namespace", NS) == (expected if in_namespace else [])
    assert destination_rule_risks(rules, "mesh", NS) == (expected if in_mesh else [])


def test_the_cluster_domain_counts():
    rules = [destination_rule(NS, "fq", "ratings.bookinfo.svc.example.org", trafficPolicy=tls("DISABLE")),
             destination_rule(NS, "short", "ratings", trafficPolicy=tls("SIMPLE")),
             destination_rule(NS, "local", "ratings.bookinfo.svc.cluster.local", trafficPolicy=tls("SIMPLE"))]
    for scope in ("namespace", "mesh"):
        assert destination_rule_risks(rules, scope, NS, "example.org") == [
            f"{NS}/fq (host ratings.bookinfo.svc.example.org): tls.mode DISABLE",
            f"{NS}/short (host ratings): tls.mode SIMPLE"]


def test_a_namespace_name_is_matched_literally():
    # "bookinfo.x" is no valid namespace, but the dot must not match any character.
    rules = [destination_rule(NS, "dr", "details.bookinfoxx", trafficPolicy=tls("DISABLE"))]
    assert destination_rule_risks(rules, "namespace", "bookinfo.x") == []


def test_bad_input_is_an_error():
    with pytest.raises(AnsibleFilterError, match="scope must be 'namespace' or 'mesh'"):
        destination_rule_risks([], "cluster", NS)
    with pytest.raises(AnsibleFilterError, match="expects the DestinationRules"):
        destination_rule_risks({"resources": []}, "mesh", NS)


# ---------------------------------------------------------------------------
# Client pods as the API server returns them
# ---------------------------------------------------------------------------

def client_pod(name, phase="Running", client=None, init=(), proxy=None, conditions=None, reason=None,
               node="worker-1", uid=None):
    """A client pod of the proof: container ``client`` (status ``client``), an
    optional native sidecar istio-proxy (an init container with status ``proxy``)."""
    status = {"phase": phase, "hostIP": "10.0.0.5", "podIP": "10.244.1.17", "qosClass": "Burstable",
              "startTime": "2026-03-01T10:00:00Z"}
    if reason:
        status["reason"] = reason
    if client is not None:
        status["containerStatuses"] = [{"name": "client", "image": "docker.io/curlimages/curl:8.16.0",
                                        "ready": False, "restartCount": 0, "started": False, **client}]
    init_statuses = [{"name": name_, "ready": False, "restartCount": 0, **state} for name_, state in init]
    if proxy is not None:
        init_statuses.append({"name": "istio-proxy", "ready": True, "restartCount": 0, **proxy})
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if conditions is not None:
        status["conditions"] = [{"type": t, "status": s, "lastTransitionTime": "2026-03-01T10:00:01Z"}
                                for t, s in conditions]
    spec = {"containers": [{"name": "client", "image": "docker.io/curlimages/curl:8.16.0"}],
            "restartPolicy": "Never", "activeDeadlineSeconds": 180}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": uid or f"uid-{name}",
                         "labels": {"app.kubernetes.io/name": "mtls-verify-client",
                                    "servicemesh.istio/mtls-verify-client": name.rsplit("-", 1)[1]}},
            "spec": spec, "status": status}


def terminated(exit_code, message=None):
    state = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
             "startedAt": "2026-03-01T10:00:02Z", "finishedAt": "2026-03-01T10:00:03Z"}
    if message is not None:
        state["message"] = message
    return {"state": {"terminated": state}}


RUNNING = {"state": {"running": {"startedAt": "2026-03-01T10:00:02Z"}}}


def waiting(reason):
    return {"state": {"waiting": {"reason": reason, "message": "..."}}}


def log_result(pod, log):
    """One loop result of kubernetes.core.k8s_log."""
    return {"item": pod, "ansible_loop_var": "item", "changed": False, "failed": False, "log": log,
            "log_lines": log.splitlines()}


# ---------------------------------------------------------------------------
# client_outcome
# ---------------------------------------------------------------------------

def test_a_refused_plaintext_client():
    refused = "curl: (56) Recv failure: Connection reset by peer\nhttp_code=000\n"
    pods = [client_pod(PLAINTEXT, "Failed", terminated(56, refused)),
            client_pod(SIDECAR, "Succeeded", terminated(0, "http_code=200"), proxy=RUNNING)]
    assert client_outcome(pods, PLAINTEXT) == {
        "name": PLAINTEXT, "exit_code": 56, "http_status": None,
        "output": "curl: (56) Recv failure: Connection reset by peer\nhttp_code=000"}


def test_the_sidecar_client_that_got_200():
    pods = [client_pod(SIDECAR, "Succeeded", terminated(0, "  http_code=200 \n"), proxy=RUNNING)]
    assert client_outcome(pods, SIDECAR) == {"name": SIDECAR, "exit_code": 0, "http_status": 200,
                                             "output": "http_code=200"}


def test_another_status_is_read_from_the_output():
    pods = [client_pod(SIDECAR, "Failed", terminated(100, "upstream connect error\nhttp_code=503"))]
    assert client_outcome(pods, SIDECAR)["http_status"] == 503
    # The first code counts; a four-digit run is no status.
    pods = [client_pod(SIDECAR, "Failed", terminated(22, "http_code=4040 http_code=404 then http_code=200"))]
    assert client_outcome(pods, SIDECAR)["http_status"] == 404


def test_exit_0_without_a_code_means_200_and_000_means_no_answer():
    pods = [client_pod(PLAINTEXT, "Succeeded", terminated(0, "done")),
            client_pod(SIDECAR, "Succeeded", terminated(0, "http_code=000"))]
    assert client_outcome(pods, PLAINTEXT)["http_status"] == 200
    assert client_outcome(pods, SIDECAR)["http_status"] == 200
    pods = [client_pod(PLAINTEXT, "Failed", terminated(7, "curl: (7) Failed to connect"))]
    assert client_outcome(pods, PLAINTEXT)["http_status"] is None


def test_without_a_termination_message_the_log_is_the_output():
    pods = [client_pod(PLAINTEXT, "Succeeded", terminated(0, "")),
            client_pod(SIDECAR, "Failed", terminated(6))]
    logs = [log_result(PLAINTEXT, " http_code=200\n"),
            {"item": SIDECAR, "ansible_loop_var": "item", "failed": True, "msg": "pods not found"}]
    assert client_outcome(pods, PLAINTEXT, logs) == {"name": PLAINTEXT, "exit_code": 0, "http_status": 200,
                                                     "output": "http_code=200"}
    # A failed read (no log) leaves the note; so does a blank log or no read at all.
    assert client_outcome(pods, SIDECAR, logs)["output"] == NO_OUTPUT
    assert client_outcome(pods, SIDECAR, [log_result(SIDECAR, "  \n")])["output"] == NO_OUTPUT
    assert client_outcome(pods, SIDECAR) == {"name": SIDECAR, "exit_code": 6, "http_status": None,
                                             "output": NO_OUTPUT}


def test_the_termination_message_wins_over_the_log():
    pods = [client_pod(PLAINTEXT, "Failed", terminated(56, "from the message"))]
    assert client_outcome(pods, PLAINTEXT, [log_result(PLAINTEXT, "from the log")])["output"] == "from the message"


def test_a_client_that_never_ended_or_is_gone_has_no_exit_code():
    pods = [client_pod(PLAINTEXT, client=RUNNING), client_pod(SIDECAR, "Pending")]
    for name, pod_list in ((PLAINTEXT, pods), (SIDECAR, pods), (PLAINTEXT, [])):
        assert client_outcome(pod_list, name) == {"name": name, "exit_code": None, "http_status": None,
                                                  "output": NO_OUTPUT}


def test_only_the_container_named_client_counts():
    pod = client_pod(SIDECAR, "Running", client=RUNNING)
    pod["status"]["containerStatuses"].insert(0, {"name": "istio-proxy", **terminated(0, "http_code=200")})
    assert client_outcome([pod], SIDECAR)["exit_code"] is None


# ---------------------------------------------------------------------------
# mtls_proof_verdict
# ---------------------------------------------------------------------------

URL = "http://productpage:9080/productpage"
POLICY = f"{NS}/default"
REFUSED = {"name": PLAINTEXT, "exit_code": 56, "http_status": None,
           "output": "curl: (56) Recv failure: Connection reset by peer\nhttp_code=000"}
ANSWERED = {"name": PLAINTEXT, "exit_code": 0, "http_status": 200, "output": "http_code=200"}
SIDECAR_OK = {"name": SIDECAR, "exit_code": 0, "http_status": 200, "output": "http_code=200"}


def verdict(plaintext, sidecar, mode="STRICT", refused=(56,)):
    return mtls_proof_verdict({"plaintext": plaintext, "sidecar": sidecar}, mode, list(refused), NS, URL, POLICY)


def test_strict_proven():
    assert verdict(REFUSED, SIDECAR_OK) == {
        "proven": True, "enforced": True,
        "negative_exit_code": 56, "negative_output": REFUSED["output"],
        "positive_exit_code": 0, "positive_status": 200, "positive_output": "http_code=200",
        "problems": [],
        "message": f"mTLS STRICT is enforced ({POLICY}): the plaintext client was refused with exit code 56,"
                   " the sidecar client got HTTP 200."}


@pytest.mark.parametrize("plaintext", [ANSWERED, {**ANSWERED, "exit_code": 100, "http_status": 503,
                                                  "output": "http_code=503"}], ids=["200", "other-status"])
def test_a_plaintext_answer_under_strict_is_not_enforced(plaintext):
    result = verdict(plaintext, SIDECAR_OK)
    assert result["enforced"] is False
    assert result["problems"] == [
        f"mTLS is not enforced: the client without a sidecar ({NS}/{PLAINTEXT}) got an HTTP answer in plaintext"
        f" from {URL} (exit code {plaintext['exit_code']}; output: {plaintext['output']}). Look for a"
        f" PeerAuthentication that overrides {POLICY} (workload selector, portLevelMtls) and check the target pods"
        " have their sidecar."]
    assert result["message"] == (f"mTLS mode STRICT ({POLICY}): the plaintext client ended with exit code"
                                 f" {plaintext['exit_code']}, the sidecar client got HTTP 200.")


def test_a_plaintext_client_that_reached_nothing_is_inconclusive():
    unreachable = {"name": PLAINTEXT, "exit_code": 6, "http_status": None,
                   "output": "curl: (6) Could not resolve host: productpage-typo"}
    assert verdict(unreachable, SIDECAR_OK, refused=(56, 52))["problems"] == [
        f"Inconclusive: the client without a sidecar ({NS}/{PLAINTEXT}) could not reach {URL} at all (exit code 6,"
        " expected one of 56, 52 = connection reset by the sidecar; output: curl: (6) Could not resolve host:"
        " productpage-typo), which proves nothing about mTLS. Check the URL, the Service and its pods."]


def test_a_sidecar_client_without_200_means_the_mesh_is_broken():
    refused = {"name": SIDECAR, "exit_code": 56, "http_status": None, "output": "curl: (56) Recv failure"}
    result = verdict(REFUSED, refused)
    assert result["enforced"] is True
    assert result["problems"] == [
        f"The mesh is broken: the client with a sidecar ({NS}/{SIDECAR}) did not get HTTP 200 from {URL} (exit code"
        " 56, HTTP status none). Client output: curl: (56) Recv failure Check the target pods are Ready with"
        " istio-proxy, istiod is running, and no DestinationRule disables mTLS."]
    assert result["message"].endswith("the sidecar client got HTTP none.")
    status = verdict(REFUSED, {"name": SIDECAR, "exit_code": 100, "http_status": 503, "output": "http_code=503"})
    assert "(exit code 100, HTTP status 503)" in status["problems"][0]


def test_permissive_only_needs_the_sidecar_client():
    result = verdict(ANSWERED, SIDECAR_OK, mode="PERMISSIVE")
    assert result["enforced"] is False and result["problems"] == []
    assert result["message"] == (f"mTLS mode PERMISSIVE ({POLICY}): the plaintext client ended with exit code 0,"
                                 " the sidecar client got HTTP 200.")
    # Even a refusal does not count as enforcement under PERMISSIVE.
    assert verdict(REFUSED, SIDECAR_OK, mode="PERMISSIVE")["enforced"] is False


def test_clients_that_never_terminated():
    none = {"name": PLAINTEXT, "exit_code": None, "http_status": None, "output": NO_OUTPUT}
    result = verdict(none, {**none, "name": SIDECAR})
    assert result["enforced"] is False
    assert result["problems"][0].startswith("Inconclusive:") and "(exit code None," in result["problems"][0]
    assert "(exit code None, HTTP status none)" in result["problems"][1]
    # As the role's Jinja rendered it: an absent exit code prints as nothing in the summary.
    assert result["message"] == (f"mTLS mode STRICT ({POLICY}): the plaintext client ended with exit code ,"
                                 " the sidecar client got HTTP none.")


def test_verdict_needs_both_outcomes():
    with pytest.raises(AnsibleFilterError, match="sidecar is missing"):
        mtls_proof_verdict({"plaintext": REFUSED}, "STRICT", [56], NS, URL, POLICY)


# ---------------------------------------------------------------------------
# client_timeout_message
# ---------------------------------------------------------------------------

def event(pod_uid, reason, message, created, name=PLAINTEXT):
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{reason.lower()}", "namespace": NS, "creationTimestamp": created},
            "involvedObject": {"kind": "Pod", "namespace": NS, "name": name, "uid": pod_uid},
            "reason": reason, "message": message, "type": "Normal", "count": 1}


EVENTS = [
    event(f"uid-{PLAINTEXT}", "Pulled", "Container image already present on machine", "2026-03-01T10:00:03Z"),
    event(f"uid-{PLAINTEXT}", "Scheduled", f"Successfully assigned {NS}/{PLAINTEXT} to worker-1",
          "2026-03-01T10:00:01Z"),
    event("uid-of-an-earlier-pod", "Killing", "Stopping container client", "2026-02-28T09:00:00Z"),
    {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "no-uid", "creationTimestamp": "2026-03-01T10:00:00Z"},
     "involvedObject": {"kind": "Pod", "name": PLAINTEXT}, "reason": "Other", "message": "no uid"},
    event(f"uid-{SIDECAR}", "Started", "Started container client", "2026-03-01T10:00:02Z", name=SIDECAR),
]
NOT_READY = [("Initialized", "True"), ("Ready", "False"), ("ContainersReady", "False"), ("PodScheduled", "True")]


def message(pods, events=(), timeout=180):
    return client_timeout_message(pods, [PLAINTEXT, SIDECAR], list(events), NS, timeout)


def test_a_client_that_hangs_is_explained_with_its_own_events_oldest_first():
    pods = [client_pod(PLAINTEXT, client=RUNNING, proxy=waiting("PodInitializing"), conditions=NOT_READY),
            client_pod(SIDECAR, "Succeeded", terminated(0, "http_code=200"))]
    assert message(pods, EVENTS, timeout=6) == (
        "Timeout:\n"
        f" client pod {NS}/{PLAINTEXT} did not finish within 6 s\n"
        " (phase Running;\n"
        " node worker-1; containers: client running, istio-proxy waiting (PodInitializing);"
        " conditions not true: Ready, ContainersReady). Events:"
        f" [Scheduled] Successfully assigned {NS}/{PLAINTEXT} to worker-1;"
        " [Pulled] Container image already present on machine;"
        f" client pod {NS}/{SIDECAR} finished." + ADVICE)


def test_a_pod_its_deadline_stopped_did_not_finish():
    pods = [client_pod(PLAINTEXT, "Failed", terminated(137), reason="DeadlineExceeded", conditions=NOT_READY,
                       init=[("istio-init", terminated(0))]),
            client_pod(SIDECAR, "Failed", terminated(56, "refused"))]
    assert message(pods, EVENTS) == (
        "Timeout:\n"
        f" client pod {NS}/{PLAINTEXT} did not finish within 180 s\n"
        " (phase Failed, DeadlineExceeded;\n"
        " node worker-1; containers: client terminated, istio-init terminated;"
        " conditions not true: Ready, ContainersReady). Events:"
        f" [Scheduled] Successfully assigned {NS}/{PLAINTEXT} to worker-1;"
        " [Pulled] Container image already present on machine;"
        f" client pod {NS}/{SIDECAR} finished." + ADVICE)


def test_an_unscheduled_pod_and_a_gone_one():
    pods = [client_pod(PLAINTEXT, "Pending", node=None, conditions=[("PodScheduled", "False")])]
    assert message(pods) == (
        "Timeout:\n"
        f" client pod {NS}/{PLAINTEXT} did not finish within 180 s\n"
        " (phase Pending;\n"
        " node none; containers: none; conditions not true: PodScheduled). Events: none."
        f" client pod {NS}/{SIDECAR} is gone." + ADVICE)
    assert message([]) == f"Timeout:\n client pod {NS}/{PLAINTEXT} is gone. client pod {NS}/{SIDECAR} is gone." + ADVICE


def test_image_pull_trouble_names_each_container_state():
    pods = [client_pod(PLAINTEXT, client=RUNNING, conditions=[("Ready", "True")]),
            client_pod(SIDECAR, client=waiting("ErrImagePull"),
                       init=[("istio-init", waiting("ImagePullBackOff"))], proxy=RUNNING)]
    text = message(pods, EVENTS)
    assert (f" client pod {NS}/{PLAINTEXT} did not finish within 180 s\n (phase Running;\n node worker-1;"
            " containers: client running; conditions not true: none). Events:") in text
    assert (f" client pod {NS}/{SIDECAR} did not finish within 180 s\n (phase Running;\n node worker-1;"
            " containers: client waiting (ErrImagePull), istio-init waiting (ImagePullBackOff), istio-proxy running;"
            " conditions not true: none). Events: [Started] Started container client;" + ADVICE) in text


def test_a_pod_that_ended_without_its_client_status_finished():
    # Evicted: phase Failed with another reason, the container statuses lost.
    pods = [client_pod(PLAINTEXT, "Failed", reason="Evicted"), client_pod(SIDECAR, "Succeeded")]
    assert message(pods) == (f"Timeout:\n client pod {NS}/{PLAINTEXT} finished. client pod {NS}/{SIDECAR} finished."
                             + ADVICE)


def test_timeout_message_rejects_what_is_not_a_list():
    with pytest.raises(AnsibleFilterError, match="expects the events"):
        client_timeout_message([], [PLAINTEXT], None, NS, 180)


# ---------------------------------------------------------------------------
# Through Ansible's templating, as the role calls them
# ---------------------------------------------------------------------------

def test_the_role_expressions_render():
    pods = [client_pod(PLAINTEXT, "Failed", terminated(56, "reset\nhttp_code=000")),
            client_pod(SIDECAR, "Succeeded", terminated(0, ""))]
    variables = {
        "__mtls_verify_pods_state": {"resources": pods},
        "__mtls_verify_logs": {"changed": False, "skipped": True},  # the log task did not run
        "__mtls_verify_clients": {"plaintext": PLAINTEXT, "sidecar": SIDECAR},
        "__mtls_verify_policies": {"results": [
            {"resources": [destination_rule(NS, "pp", "productpage", trafficPolicy=tls("DISABLE"))]},
            {"resources": []}]},
        "mtls_verify_scope": "namespace", "mtls_verify_namespace": NS, "mtls_verify_cluster_domain": "cluster.local",
    }
    outcome = render("{{ __mtls_verify_pods_state.resources | servicemesh.istio.client_outcome("
                     "__mtls_verify_clients.sidecar, __mtls_verify_logs.results | default([])) }}", **variables)
    assert outcome == {"name": SIDECAR, "exit_code": 0, "http_status": 200, "output": NO_OUTPUT}
    risks = render("{{ __mtls_verify_policies.results[0].resources | servicemesh.istio.destination_rule_risks("
                   "mtls_verify_scope, mtls_verify_namespace, mtls_verify_cluster_domain) }}", **variables)
    assert risks == [f"{NS}/pp (host productpage): tls.mode DISABLE"]
    timeout = render("{{ [] | servicemesh.istio.client_timeout_message(__mtls_verify_clients.values() | list, [],"
                     " mtls_verify_namespace, 180) }}", **variables)
    assert timeout.startswith(f"Timeout:\n client pod {NS}/{PLAINTEXT} is gone.")
    judged = render("{{ {'plaintext': __mtls_verify_pods_state.resources | servicemesh.istio.client_outcome("
                    "__mtls_verify_clients.plaintext), 'sidecar': {'name': 'x', 'exit_code': 0, 'http_status': 200,"
                    " 'output': ''}} | servicemesh.istio.mtls_proof_verdict('STRICT', [56], mtls_verify_namespace,"
                    " 'http://productpage:9080/productpage', 'bookinfo/default', 100) }}", **variables)
    assert judged["enforced"] is True and judged["problems"] == []
