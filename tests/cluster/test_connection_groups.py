"""Every Kubernetes module of the collection reaches the cluster the same way,
whichever way the play names it: module_defaults for this collection's group
(group/servicemesh.istio.kubernetes, what the playbooks use), for
kubernetes.core's own group (group/kubernetes.core.k8s, the habit of its
users: the action plugins read it, since a module cannot join another
collection's group), or the K8S_AUTH_* environment variables. Without any of
them, and with no kubeconfig in the environment, each module fails: so the
cluster really was reached through the way under test.

Against the real API server of the test cluster; nothing is simulated. The
modules are run in the controller's process (their action plugins' fast path)
and as modules, since the group defaults are merged before either.
"""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest

from conftest import results_of, run_playbook

MODULES = ["wait_for_ready", "preflight_info", "run_lock", "wait_for_certificate", "service_proxy_request",
           "istio_analyze"]


def tasks(run_id: str) -> list[dict]:
    """One task per module; each only reads, except run_lock, which takes and gives back a lock of its own."""
    lock = {"run_id": run_id, "name": f"connection-test-{run_id[:8]}", "namespace": "default", "keep_until_exit": False}
    return [
        {"name": "wait_for_ready", "servicemesh.istio.wait_for_ready": {
            "resources": [{"kind": "Service", "name": "kubernetes", "namespace": "default", "require_address": False}],
            "timeout": 5, "events": 0}, "failed_when": False},
        {"name": "preflight_info", "servicemesh.istio.preflight_info": {"nodes": True},
         "failed_when": False},
        {"name": "run_lock", "servicemesh.istio.run_lock": lock, "failed_when": False},
        {"name": "run_lock given back", "servicemesh.istio.run_lock": {**lock, "state": "absent"}, "failed_when": False},
        # No such Certificate or Service: reaching the API server gives an answer about the object.
        {"name": "wait_for_certificate", "servicemesh.istio.wait_for_certificate": {
            "certificate": "no-such-certificate", "namespace": "default", "timeout": 0}, "failed_when": False},
        {"name": "service_proxy_request", "servicemesh.istio.service_proxy_request": {
            "namespace": "default", "service": "no-such-service", "port": "80", "path": "/", "timeout": 0},
         "failed_when": False},
        {"name": "istio_analyze", "servicemesh.istio.istio_analyze": {"namespaces": ["default"], "required": True},
         "failed_when": False},
    ]


def play(tmp_path, module_defaults: dict, run_id: str, name: str):
    path = tmp_path / f"{name}.yml"
    task_list = tasks(run_id)
    path.write_text(json.dumps([{"name": name, "hosts": "servicemesh_controller", "gather_facts": False,
                                 "module_defaults": module_defaults, "tasks": task_list}]))
    return path


def outcomes(run) -> dict:
    """Per module, its message (empty on success; the tasks' failed_when keeps
    the play going, so the message is what tells), without what varies from
    one run to the next (elapsed times)."""
    out = {}
    for module in MODULES:
        (result,) = results_of(run, module)[:1] or [{"msg": "(task did not run)"}]
        msg = " ".join(str(result.get("msg", "")).split())
        out[module] = re.sub(r"\d+(\.\d+)? ?s\b|\(\d+ attempts?\)", "N", msg)
    return out


@pytest.fixture
def no_ambient_cluster(monkeypatch, tmp_path):
    """No kubeconfig the kubernetes client or istioctl would find by themselves."""
    for key in list(os.environ):
        if key.startswith("K8S_AUTH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_every_module_reaches_the_cluster_through_each_way_and_not_without(
        tmp_path, monkeypatch, kubeconfig, no_ambient_cluster):
    connection = {"kubeconfig": "{{ servicemesh_istio_kubeconfig }}", "context": "{{ servicemesh_istio_context }}"}
    ours = run_playbook(play(tmp_path, {"group/servicemesh.istio.kubernetes": connection}, str(uuid.uuid4()), "ours"))
    assert ours.rc == 0, ours.explain()
    reference = outcomes(ours)
    # Reached: the modules that check something present pass; the ones asked
    # about absent objects say so (an answer of the API server).
    for module in ("wait_for_ready", "preflight_info"):
        assert reference[module] == "", (module, reference[module], ours.explain())
    assert "no-such-certificate" in reference["wait_for_certificate"], reference
    assert "no-such-service" in reference["service_proxy_request"], reference

    for way in ("1", "0"):
        monkeypatch.setenv("SERVICEMESH_ISTIO_IN_PROCESS", way)
        core = run_playbook(play(tmp_path, {"group/kubernetes.core.k8s": connection,
                                            # Not a connection option: must not reach this collection's modules.
                                            "group/kubernetes.core.helm": {"wait": True}},
                                 str(uuid.uuid4()), f"core-{way}"))
        assert core.rc == 0 and outcomes(core) == reference, (way, outcomes(core), reference, core.explain())
    monkeypatch.delenv("SERVICEMESH_ISTIO_IN_PROCESS")

    # The task's own options win over kubernetes.core's group.
    wrong = {"kubeconfig": str(tmp_path / "wrong-kubeconfig"), "context": "{{ servicemesh_istio_context }}"}
    both = run_playbook(play(tmp_path, {"group/kubernetes.core.k8s": wrong,
                                        "group/servicemesh.istio.kubernetes": connection}, str(uuid.uuid4()), "both"))
    assert both.rc == 0 and outcomes(both) == reference, (outcomes(both), reference)

    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", kubeconfig)
    monkeypatch.setenv("K8S_AUTH_CONTEXT", "smistio")
    env = run_playbook(play(tmp_path, {}, str(uuid.uuid4()), "env"))
    assert env.rc == 0 and outcomes(env) == reference, (outcomes(env), reference)
    monkeypatch.delenv("K8S_AUTH_KUBECONFIG")
    monkeypatch.delenv("K8S_AUTH_CONTEXT")

    nothing = run_playbook(play(tmp_path, {}, str(uuid.uuid4()), "nothing"))
    assert nothing.rc == 0, nothing.explain()
    for module, msg in outcomes(nothing).items():
        assert msg and msg != reference[module], (module, "reached a cluster with no connection options at all", msg)
