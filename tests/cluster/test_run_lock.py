"""Issue 16: two runs at once against one cluster (two AWX jobs).

site.yml and teardown.yml take a lock, a real coordination.k8s.io Lease
(servicemesh.istio.run_lock), after the preflight's checks and before the
first change. While another run holds it, a run fails at once naming that run
(or waits for it with preflight_lock_wait) and changes nothing; the lock goes
back when the run ends, whether it succeeded, failed or was killed; no Helm
release is left pending.

Real: kube-apiserver (the Lease, its resourceVersion conflicts), Helm, the
ansible-playbook processes (two and three of them at once). The module logic
without a cluster: tests/unit/plugins/module_utils/test_run_lock_utils.py.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import signal
import subprocess
import time
import uuid

import pytest
from kubernetes import client

from conftest import (REPO_ROOT, changes_by_others, cluster_snapshot, eventually, helm_releases_any_status, module_play,
                      reset_cluster, run_playbook)

SITE = REPO_ROOT / "playbooks/site.yml"
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
NAME, NS = "servicemesh-istio-run", "kube-system"


def lease(k8s):
    try:
        return client.CoordinationV1Api(k8s).read_namespaced_lease(NAME, NS)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def hold_as_another_run(k8s, description="AWX job 41 servicemesh.istio site", renewed_ago=5, duration=120):
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=renewed_ago)
    client.CoordinationV1Api(k8s).create_namespaced_lease(NS, client.V1Lease(
        metadata=client.V1ObjectMeta(name=NAME, annotations={
            "servicemesh.istio/run": description, "servicemesh.istio/host": "awx-ee-1", "servicemesh.istio/pid": "81"}),
        spec=client.V1LeaseSpec(holder_identity="another-run", lease_duration_seconds=duration,
                                acquire_time=now, renew_time=now)))


def drop(k8s):
    try:
        client.CoordinationV1Api(k8s).delete_namespaced_lease(NAME, NS)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def helm_statuses() -> dict[str, str]:
    return {f"{r['namespace']}/{r['name']}": r["status"] for r in helm_releases_any_status()}


def test_a_held_lock_stops_site_and_teardown_before_any_change(k8s, tmp_path):
    """Another run's fresh lock: site.yml (also --check) and teardown.yml fail
    in their first steps naming that run, and nothing changes; the other run's
    lock stays."""
    hold_as_another_run(k8s)
    try:
        before = cluster_snapshot()
        for args in (("--tags", "istio"), ("--tags", "istio", "--check")):
            run = run_playbook(SITE, *args, report=tmp_path / "report.json")
            assert run.rc != 0 and run.changed == 0, run.explain()
            message = " ".join(run.failures())
            assert "Another run holds the lock Lease kube-system/servicemesh-istio-run" in message, message
            assert "AWX job 41 servicemesh.istio site (on awx-ee-1, pid 81)" in message, message
            assert "Nothing was changed" in message and "preflight_lock_wait" in message, message
            report = json.loads((tmp_path / "report.json").read_text())
            assert report["failed_step"]["step"] == "preflight", report
        down = run_playbook(TEARDOWN)
        assert down.rc != 0 and down.changed == 0, down.explain()
        assert "AWX job 41" in " ".join(down.failures()), down.explain()
        assert changes_by_others(before) == []
        assert lease(k8s).spec.holder_identity == "another-run"
    finally:
        drop(k8s)


def test_an_abandoned_lock_is_taken_over_with_a_warning(k8s, tmp_path):
    """A lock its run stopped renewing (renewed 10 min ago, 2 min duration) is
    taken over, and the run says whose it was; at the end the lock is gone."""
    hold_as_another_run(k8s, renewed_ago=600)
    try:
        run = run_playbook(module_play(tmp_path, [{"name": "Lock", "servicemesh.istio.run_lock": {
            "run_id": f"taker-{uuid.uuid4().hex[:8]}", "description": "the taking run"}}]))
        assert run.rc == 0, run.explain()
        warnings = [w for _name, _host, result in run.task_results() for w in result.get("warnings", [])]
        assert any("stopped renewing" in w and "AWX job 41" in w for w in warnings), warnings
        eventually("the taking run's lock to go", lambda: lease(k8s) is None, timeout=15, step=0.5)
    finally:
        drop(k8s)


@pytest.mark.parametrize("in_process", ["1", "0"], ids=["in-process", "as-module"])
def test_the_lock_goes_back_when_the_run_fails(k8s, tmp_path, monkeypatch, in_process):
    """A run that fails after taking the lock (no explicit give back): the
    background renewer gives it back as ansible-playbook ends, forked from the
    worker process (in process) or from the module's own process."""
    monkeypatch.setenv("SERVICEMESH_ISTIO_IN_PROCESS", in_process)
    run_id = f"failing-run-{uuid.uuid4().hex[:8]}"
    play = module_play(tmp_path, [
        {"name": "Lock", "servicemesh.istio.run_lock": {"run_id": run_id, "duration": 30}, "register": "got"},
        {"name": "Held while the run lives", "kubernetes.core.k8s_info": {"kind": "Lease", "namespace": NS, "name": NAME},
         "register": "held"},
        {"name": "Check", "ansible.builtin.assert": {"that": [
            "got.kept_until_exit", f"held.resources[0].spec.holderIdentity == '{run_id}'"]}},
        {"name": "Fail", "ansible.builtin.fail": {"msg": "the run fails here"}},
    ])
    run = run_playbook(play)
    assert run.rc != 0 and "the run fails here" in " ".join(run.failures()), run.explain()
    assert not [f for f in run.failures() if "Check" in f], run.explain()
    eventually("the failed run's lock to go", lambda: lease(k8s) is None, timeout=15, step=0.5)


def test_a_killed_run_gives_the_lock_back(k8s, tmp_path):
    """ansible-playbook killed with SIGKILL while it holds the lock: the
    renewer sees its process end and gives the lock back."""
    run_id = f"killed-run-{uuid.uuid4().hex[:8]}"
    play = module_play(tmp_path, [
        {"name": "Lock", "servicemesh.istio.run_lock": {"run_id": run_id, "duration": 30}},
        {"name": "Work", "ansible.builtin.pause": {"seconds": 120}},
    ])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"),
               ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), SERVICEMESH_ISTIO_REPORT_PATH="")
    proc = subprocess.Popen([str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", str(REPO_ROOT / "inventories/local"),
                             str(play)], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        eventually("the run to take the lock", lambda: lease(k8s) is not None, timeout=60, step=0.5)
        assert lease(k8s).spec.holder_identity == run_id
        assert lease(k8s).metadata.annotations["servicemesh.istio/pid"] == str(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    eventually("the killed run's lock to go", lambda: lease(k8s) is None, timeout=15, step=0.5)


def test_three_runs_at_once_one_works_one_waits_one_is_refused(k8s):
    """site.yml --tags istio three times against one cluster: the first takes
    the lock and installs; a second started meanwhile with
    preflight_lock_wait waits for it and then finds nothing to change; a
    third without waiting is refused naming the first, before any change. No
    Helm release is left pending, and no lock is left."""
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            first = pool.submit(run_playbook, SITE, "--tags", "istio")
            eventually("the first run to take the lock", lambda: lease(k8s) is not None or first.done(),
                       timeout=120, step=0.5)
            assert not first.done(), first.result().explain()
            holder = lease(k8s).spec.holder_identity
            started = time.monotonic()
            waiting = pool.submit(run_playbook, SITE, "--tags", "istio", extra_vars={"preflight_lock_wait": 900})
            refused = pool.submit(run_playbook, SITE, "--tags", "istio")
            third = refused.result()
            assert third.rc != 0 and third.changed == 0, third.explain()
            message = " ".join(third.failures())
            assert "Another run holds the lock" in message and "(Service mesh with Istio, tags istio)" in message, message
            first, second = first.result(), waiting.result()
        assert first.rc == 0 and first.changed > 0, first.explain()
        assert second.rc == 0 and second.changed == 0, second.explain()
        lock = [r for name, _h, r in second.task_results() if "Take the run lock" in name][0]
        assert lock["waited"] > 0 and time.monotonic() - started > lock["waited"], lock
        assert lock["holder"] == {} and lock["state"] == "free", lock
        assert holder != "", holder
        statuses = helm_statuses()
        assert statuses and all(s == "deployed" for s in statuses.values()), statuses
        assert lease(k8s) is None
    finally:
        reset_cluster()
