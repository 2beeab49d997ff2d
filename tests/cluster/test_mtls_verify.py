"""Issue: role mtls_verify, strict mTLS proven both ways, against the local test cluster.

Real: the kube-apiserver, Istio's PeerAuthentication and DestinationRule CRDs
(their schemas) and istiod's validating webhook, which accept or refuse what
the role applies; istiod's injection webhook, which gives the sidecar client
its istio-proxy (and leaves the plaintext client alone); the pods the role
creates, waits for, reads and deletes, and their events (the real scheduler's).

Stand-in: the test cluster has no data plane (KWOK nodes run no container),
so no curl ever runs and no Envoy ever answers. tests/cluster/standins.py plays
each client's curl and decides its outcome from what the real istiod pushes:
the target Service and pod behind the role's TARGET_URL, the target's inbound
filter chains for the port (plaintext accepted or not), and the sidecar
client's outbound cluster (mutual TLS or plaintext). The outcome reaches the
pod the way a real one's does, as exit code and termination message, through
the KWOK stage hack/testcluster/kwok/smistio-pod-complete.yaml. So each failure
below comes from a real misconfiguration (a PERMISSIVE exception, a
DestinationRule disabling TLS, a wrong target URL); only "a client that never
finishes" is injected (the stand-in leaves that client running, as a hung
curl would). The kubelet logs API is not reachable on KWOK nodes, so the
role's log reading falls back to the termination message.

Bookinfo runs in its own namespace; the module installs Istio and Bookinfo
with site.yml first and leaves an empty cluster (conftest.reset_cluster).
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from conftest import REPO_ROOT, assert_istio_analyze_clean, reset_cluster, run_playbook, assert_no_key_material
from standins import CurlClientStandIn

SITE = REPO_ROOT / "playbooks/site.yml"
VERIFY = REPO_ROOT / "playbooks/verify.yml"
MTLS = REPO_ROOT / "tests/cluster/playbooks/mtls_verify.yml"
NS = "smistio-mtls"
URL = "http://productpage:9080/productpage"
CLIENTS = ("mtls-verify-plaintext", "mtls-verify-sidecar")

# What each client's script prints (and writes to /dev/termination-log) on a
# real cluster: the stand-in writes the same line for the outcome it decides.
REFUSED = (f"client=plaintext url={URL} curl_exit=56 http_code=000 exit=56 "
           "error=curl: (56) Recv failure: Connection reset by peer")
SIDECAR_OK = f"client=sidecar url={URL} curl_exit=0 http_code=200 exit=0"
SIDECAR_REFUSED = (f"client=sidecar url={URL} curl_exit=56 http_code=000 exit=56 "
                   "error=curl: (56) Recv failure: Connection reset by peer")
PASS = {"mtls_verify_namespace": NS}


@pytest.fixture
def curl(k8s):
    """The clients' curl, played from the pushed configuration (see the module docstring)."""
    with CurlClientStandIn(k8s, NS) as standin:
        yield standin
    assert not standin.errors, standin.errors


def peer_authentication(api, namespace: str = NS, name: str = "default") -> dict | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            "security.istio.io", "v1", namespace, "peerauthentications", name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete_peer_authentication(api, namespace: str = NS, name: str = "default") -> None:
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            "security.istio.io", "v1", namespace, "peerauthentications", name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def assert_no_client_pods(api) -> None:
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=mtls-verify-client")
    assert [p.metadata.name for p in pods.items] == []


def results_of(run, task_suffix: str) -> list[dict]:
    return [r for name, _h, r in run.task_results() if name.endswith(task_suffix)]


def verdict_of(run) -> dict:
    """The last value the role gave mtls_verify_verdict (also when it failed)."""
    facts = [r["ansible_facts"]["mtls_verify_verdict"] for _n, _h, r in run.task_results()
             if "mtls_verify_verdict" in r.get("ansible_facts", {})]
    assert facts, run.explain()
    return facts[-1]


def test_before_istio_is_installed(k8s):
    """Without Istio: the role alone refuses clearly; site.yml --check (Bookinfo in
    the existing namespace default) says what it cannot dry-run. Nothing changes."""
    crds = [c.metadata.name for c in client.ApiextensionsV1Api(k8s).list_custom_resource_definition().items]
    if "peerauthentications.security.istio.io" in crds:
        pytest.fail("Istio is already installed: this module expects a cluster without it (run playbooks/teardown.yml)")
    namespaces = {n.metadata.name for n in client.CoreV1Api(k8s).list_namespace().items}
    alone = run_playbook(SITE, "--tags", "mtls")
    assert alone.rc != 0 and alone.changed == 0, alone.explain()
    message = " ".join(alone.failures())
    assert "Istio is not installed on this cluster" in message and "--tags istio,bookinfo" in message, message
    run = run_playbook(SITE, "--check", "--tags", "istio,bookinfo,mtls")
    assert run.rc == 0, run.explain()
    explained = results_of(run, "Explain why nothing was dry-run")
    assert explained and "the PeerAuthentication CRD does not exist yet" in explained[0]["msg"], run.explain()
    assert "the proof is skipped" in results_of(run, "Skip the proof in check mode")[0]["msg"]
    assert results_of(run, "Print the mTLS verdict")[0]["mtls_verify_verdict"]["proven"] is False
    assert {n.metadata.name for n in client.CoreV1Api(k8s).list_namespace().items} == namespaces


@pytest.fixture(scope="module")
def mesh(k8s):
    """Istio and Bookinfo (in NS) installed by site.yml; removed afterwards."""
    run = run_playbook(SITE, "--tags", "istio,bookinfo", extra_vars={"bookinfo_namespace": NS})
    assert run.rc == 0, run.explain()
    try:
        yield
    finally:
        reset_cluster()


def test_strict_enforced_and_proven_both_ways(k8s, mesh, curl):
    """site.yml --tags mtls: refused + 200 = pass; the verdict is printed at the end."""
    run = run_playbook(SITE, "--tags", "mtls", extra_vars=PASS)
    assert run.rc == 0, run.explain()
    # The PeerAuthentication, as the API server stored it.
    pa = peer_authentication(k8s)
    assert pa and pa["spec"] == {"mtls": {"mode": "STRICT"}}, pa
    # The real injector gave the sidecar client its istio-proxy, not the plaintext one.
    created = results_of(run, "Start the client pods")[0]["result"]["results"]
    containers = {r["result"]["metadata"]["name"]: [c["name"] for c in r["result"]["spec"]["containers"]
                                                    + r["result"]["spec"].get("initContainers", [])]
                  for r in created}
    assert "istio-proxy" in containers["mtls-verify-sidecar"], containers
    assert containers["mtls-verify-plaintext"] == ["client"], containers
    # site.yml prints the verdict.
    printed = results_of(run, "Print the mTLS verdict")
    assert printed and not printed[0].get("skipped"), run.explain()
    verdict = printed[0]["mtls_verify_verdict"]
    assert verdict["enforced"] is True and verdict["proven"] is True
    assert verdict["negative_exit_code"] == 56 and verdict["positive_status"] == 200
    assert verdict["negative_output"] == REFUSED and verdict["positive_output"] == SIDECAR_OK
    assert "mTLS STRICT is enforced" in verdict["message"]
    # Each Bookinfo sidecar's inbound port, from the configuration istiod pushes.
    inbound = verdict["inbound"]
    assert sorted(i["pod"].rsplit("-", 2)[0] for i in inbound) == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"], inbound
    assert {(i["port"], i["mode"], i["source"]) for i in inbound} == {(9080, "strict", "istiod")}, inbound
    assert [d["exit"] for d in sorted(curl.decisions, key=lambda d: d["pod"])] == [56, 0], curl.decisions
    assert_no_client_pods(k8s)


def test_the_crd_and_istiod_refuse_an_invalid_peer_authentication(k8s, mesh):
    """What the role's PeerAuthentication passed through is real validation."""
    body = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "invalid", "namespace": NS}, "spec": {"mtls": {"mode": "STRICTEST"}}}
    with pytest.raises(client.ApiException) as err:
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(
            "security.istio.io", "v1", NS, "peerauthentications", body)
    assert err.value.status in (400, 422) and "STRICTEST" in err.value.body, err.value.body


def test_second_run_changes_nothing(k8s, mesh, curl):
    run = run_playbook(MTLS, "-vvv", extra_vars=PASS)
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert_no_key_material(run.raw + run.stderr, k8s)
    assert_no_client_pods(k8s)
    # The PeerAuthentication (and what the mesh had) passes Istio's own analysis.
    assert_istio_analyze_clean(NS, "istio-system")


def test_check_mode_changes_nothing(k8s, mesh):
    before = peer_authentication(k8s)
    # Asking for another mode: the server-side dry run reports the change, nothing is stored.
    run = run_playbook(MTLS, "--check", "--diff", extra_vars={**PASS, "mtls_verify_mode": "PERMISSIVE"})
    assert run.rc == 0, run.explain()
    changed = run.changed_tasks()
    assert len(changed) == 1 and changed[0].endswith("Apply the PeerAuthentication in mode PERMISSIVE"), run.explain()
    skipped = results_of(run, "Skip the proof in check mode")
    assert skipped and "the proof is skipped" in skipped[0]["msg"], run.explain()
    assert not results_of(run, "Start the client pods") or results_of(run, "Start the client pods")[0].get("skipped")
    after = peer_authentication(k8s)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["mtls"]["mode"] == "STRICT"
    # The same settings as applied: nothing would change.
    same = run_playbook(MTLS, "--check", extra_vars=PASS)
    assert same.rc == 0 and same.changed == 0, same.explain()
    assert_no_client_pods(k8s)


@pytest.fixture
def reviews_exception(k8s, mesh):
    """A workload policy that keeps productpage's port 9080 PERMISSIVE under the namespace's STRICT."""
    client.CustomObjectsApi(k8s).create_namespaced_custom_object("security.istio.io", "v1", NS, "peerauthentications", {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "productpage-exception", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "portLevelMtls": {"9080": {"mode": "PERMISSIVE"}}}})
    yield
    delete_peer_authentication(k8s, NS, "productpage-exception")


def test_a_port_left_permissive_fails_the_pushed_config_check_naming_pod_and_port(k8s, reviews_exception, curl):
    run = run_playbook(MTLS, extra_vars={**PASS, "mtls_verify_pushed_config_timeout": 5})
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    assert f"{NS}/productpage-v1-" in message and \
        "port 9080: inbound mode permissive (accepts mtls, plaintext), expected strict" in message, message
    assert "reviews" not in message and "ratings" not in message, message
    # Failed before the proof: no client was started.
    assert not curl.decisions and not results_of(run, "Start the client pods")
    assert peer_authentication(k8s)["spec"]["mtls"]["mode"] == "STRICT"
    # playbooks/verify.yml (AWX's verify template, molecule's verify) sees it too:
    # the namespace's PeerAuthentication says STRICT, the pushed config does not.
    verify = run_playbook(VERIFY, "--tags", "mtls", extra_vars={"bookinfo_namespace": NS})
    assert verify.rc != 0 and verify.changed == 0, verify.explain()
    message = " ".join(verify.failures())
    assert "port 9080: inbound mode permissive (accepts mtls, plaintext), expected strict" in message, message


def test_the_verify_playbook_passes_on_the_enforced_namespace(k8s, mesh):
    run = run_playbook(VERIFY, "--tags", "mtls", extra_vars={"bookinfo_namespace": NS})
    assert run.rc == 0 and run.changed == 0, run.explain()
    (summary,) = [r["msg"] for n, _h, r in run.task_results() if n == "Report each sidecar's pushed inbound mode"]
    assert "strict" in str(summary), summary


@pytest.mark.parametrize(
    ("extra", "hang", "expected"),
    [
        ({"mtls_verify_pushed_config_check": False}, (),
         ["mTLS is not enforced", "got an HTTP answer in plaintext", "http_code=200"]),
        ({"mtls_verify_client_timeout": 6}, ("mtls-verify-plaintext",),
         ["Timeout:", f"client pod {NS}/mtls-verify-plaintext did not finish within 6 s", "phase Running",
          "[Scheduled] Successfully assigned " + NS + "/mtls-verify-plaintext", f"client pod {NS}/mtls-verify-sidecar finished"]),
        ({"mtls_verify_target_url": "http://productpage-typo:9080/productpage"}, (),
         ["Inconclusive", "could not reach", "exit code 6", "Could not resolve host: productpage-typo",
          "proves nothing about mTLS"]),
    ],
    ids=["plaintext-answered-not-enforced", "client-never-finishes", "wrong-target-url"],
)
def test_failed_proof_says_why_and_leaves_no_pod(k8s, mesh, request, curl, extra, hang, expected):
    if extra.get("mtls_verify_pushed_config_check") is False:
        request.getfixturevalue("reviews_exception")
    curl.hang = set(hang)
    t0 = time.monotonic()
    run = run_playbook(MTLS, extra_vars={**PASS, **extra})
    assert run.rc != 0, run.explain()
    message = " ".join(run.failures())
    for text in expected:
        assert text in message, message
    assert_no_client_pods(k8s)
    verdict = verdict_of(run)
    if hang:
        assert verdict["proven"] is False and verdict["enforced"] is None
        # The wait gives up on the wall clock: the pods' deadline plus 10 s,
        # however slow each poll is on a loaded machine (the whole run's time
        # depends on the load: about 60 s quiet, 115-180 s beside the suite).
        (wait,) = [r for name, _h, r in run.task_results() if "Wait until both clients have finished" in name]
        assert wait.get("failed") and wait["elapsed"] <= extra["mtls_verify_client_timeout"] + 10 + 5, wait
        assert time.monotonic() - t0 < 300
    else:
        decided = {d["pod"]: d["exit"] for d in curl.decisions}
        assert verdict["negative_exit_code"] == decided["mtls-verify-plaintext"]
        assert verdict["enforced"] is (verdict["negative_exit_code"] == 56)
    # The policy stays as applied: the proof failing does not undo enforcement.
    assert peer_authentication(k8s)["spec"]["mtls"]["mode"] == "STRICT"


@pytest.fixture
def risky_objects(k8s, mesh):
    """A pod without a sidecar and a DestinationRule that disables mTLS for productpage, in NS."""
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(NS, client.V1Pod(
        metadata=client.V1ObjectMeta(name="legacy-client", labels={"app": "legacy", "sidecar.istio.io/inject": "false"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")])))
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "destinationrules",
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "productpage-plaintext", "namespace": NS},
         "spec": {"host": "productpage", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}})
    deadline = time.monotonic() + 30
    while core.read_namespaced_pod("legacy-client", NS).status.phase != "Running":
        assert time.monotonic() < deadline, "legacy-client never became Running"
        time.sleep(0.5)
    yield
    core.delete_namespaced_pod("legacy-client", NS, grace_period_seconds=0)
    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "destinationrules", "productpage-plaintext")


def test_pre_enforcement_checks_refuse_then_warn_when_forced(k8s, risky_objects, curl):
    delete_peer_authentication(k8s)
    refused = run_playbook(MTLS, extra_vars=PASS)
    assert refused.rc != 0, refused.explain()
    message = " ".join(refused.failures())
    assert "Refusing to apply STRICT mTLS" in message, message
    assert f"Pods without an istio-proxy sidecar (STRICT cuts them off from every meshed service): {NS}/legacy-client" \
        in message, message
    assert f"{NS}/productpage-plaintext (host productpage): tls.mode DISABLE" in message, message
    assert "mtls_verify_force: true" in message
    # Refused before any change: no policy, no client pod.
    assert peer_authentication(k8s) is None
    assert refused.changed == 0 and not results_of(refused, "Start the client pods"), refused.explain()

    # Forced, the policy is applied with warnings, and the proof then shows what the
    # warning said: the sidecar client's proxy sends plaintext to productpage
    # (the DestinationRule, as istiod pushes it), and productpage refuses it.
    forced = run_playbook(MTLS, extra_vars={**PASS, "mtls_verify_force": True})
    assert forced.rc != 0, forced.explain()
    warnings = [r["msg"] for r in results_of(forced, "Warn about what mTLS would break")[0]["results"]]
    assert any(w.startswith("WARNING: Pods without an istio-proxy sidecar") and f"{NS}/legacy-client" in w
               for w in warnings), warnings
    assert any("productpage-plaintext (host productpage): tls.mode DISABLE" in w for w in warnings), warnings
    message = " ".join(forced.failures())
    assert "The mesh is broken" in message and f"Client output: {SIDECAR_REFUSED}" in message, message
    verdict = verdict_of(forced)
    assert verdict["risks"] and verdict["enforced"] is True and verdict["positive_exit_code"] == 56
    assert peer_authentication(k8s)["spec"]["mtls"]["mode"] == "STRICT"
    assert_no_client_pods(k8s)


def test_mesh_wide_scope(k8s, mesh, curl):
    """A PeerAuthentication in the root namespace, proven from Bookinfo's namespace."""
    try:
        run = run_playbook(MTLS, extra_vars={**PASS, "mtls_verify_scope": "mesh"})
        assert run.rc == 0, run.explain()
        pa = peer_authentication(k8s, "istio-system")
        assert pa and pa["spec"]["mtls"]["mode"] == "STRICT", pa
        assert verdict_of(run)["peer_authentication"] == "istio-system/default"
        assert_no_client_pods(k8s)
    finally:
        delete_peer_authentication(k8s, "istio-system")
