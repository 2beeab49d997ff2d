"""Bookinfo's namespace labels in every combination (issue 16): Istio with or
without a revision, sidecar or ambient data plane, Bookinfo in a namespace the
role creates or in one that exists (carrying stale mesh labels of another
mode and a label of its owner). The labels must be exactly the ones the data
plane needs: a label that must go is removed, never written empty
(``istio-injection=""`` stops the revision injector; an empty
``istio.io/rev`` beside ``istio-injection=enabled`` is IST0123). In the
sidecar cases every pod must really be injected by the real istiod of the
right revision; in the ambient ones no pod has a sidecar.

The no-revision sidecar case also previews, with ``--check --diff``, the
whole site.yml for an application namespace that does not exist yet: the run
must succeed, name the namespace and what would be created in it, and create
nothing.

Real: kube-apiserver, Istio's charts installed by Helm, istiod (pilot-discovery
on the host, following the revision's Service) injecting istio-proxy.
Simulated: KWOK marks the pods Running/Ready; no Envoy or ztunnel runs.
Helpers (reading releases and pods, the clean-cluster guard, teardown) come
from test_istio_options.py.
"""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client

from conftest import REPO_ROOT, SITE_VARS, reset_cluster, run_playbook
from test_istio_options import (
    AMBIENT_VARS,
    BOOKINFO_APPS,
    BOOKINFO_DEPLOYMENTS,
    REVISION,
    REVISION_VARS,
    clean_before_and_after,
    container_names,
    injected_revision,
    is_ready,
    live_pods,
)

SITE = REPO_ROOT / "playbooks/site.yml"
OWNER_LABEL = {"team": "reviews-owners"}
# Set by the role on a namespace it creates, never on one that existed.
CREATED_BY_ROLE = {"app.kubernetes.io/managed-by": "servicemesh.istio"}
TEARDOWN = REPO_ROOT / "playbooks/teardown.yml"
# Mesh labels of the other modes, as an earlier installation may have left them.
STALE_LABELS = {"istio-injection": "enabled", "istio.io/rev": "stale-rev", "istio.io/dataplane-mode": "ambient"}

COMBINATIONS = {
    "sidecar": ({}, {"istio-injection": "enabled"}),
    "sidecar-revision": (REVISION_VARS, {"istio.io/rev": REVISION}),
    "ambient": (AMBIENT_VARS, {"istio.io/dataplane-mode": "ambient"}),
    "ambient-revision": ({**AMBIENT_VARS, **REVISION_VARS}, {"istio.io/dataplane-mode": "ambient"}),
}


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def namespace_labels(core, name: str) -> dict:
    labels = dict(core.read_namespace(name).metadata.labels or {})
    labels.pop("kubernetes.io/metadata.name", None)  # set by the API server on every namespace
    return labels


def assert_bookinfo_data_plane(api, namespace: str, sidecar: bool, revision: str | None) -> None:
    pods = live_pods(api, namespace, f"app in ({','.join(BOOKINFO_APPS)})")
    assert {f"{p.metadata.labels['app']}-{p.metadata.labels['version']}" for p in pods} == BOOKINFO_DEPLOYMENTS, \
        [p.metadata.name for p in pods]
    for pod in pods:
        assert is_ready(pod), pod.metadata.name
        names = container_names(pod)
        if sidecar:
            assert "istio-proxy" in names, (namespace, pod.metadata.name, names)
            # What istiod itself wrote: the revision whose injector handled the pod.
            assert injected_revision(pod) == (revision or "default"), (pod.metadata.name, pod.metadata.annotations)
        else:
            assert not {"istio-proxy", "istio-init"} & set(names), (pod.metadata.name, names)
            assert "sidecar.istio.io/status" not in (pod.metadata.annotations or {}), pod.metadata.name


def preview_new_namespace(core) -> None:
    """site.yml --check --diff (every role) with an application namespace that
    does not exist: it succeeds, says what it would create, creates nothing."""
    ns = new_name("preview")
    before = sorted(n.metadata.name for n in core.list_namespace().items)
    run = run_playbook(SITE, "--check", "--diff", "-e", f"@{SITE_VARS}", extra_vars={"bookinfo_namespace": ns})
    assert run.rc == 0 and run.failed == 0, run.explain()
    assert sorted(n.metadata.name for n in core.list_namespace().items) == before, "check mode created a namespace"
    # Task names come as "<role> : <name>" from the json callback.
    previews = [result for name, _host, result in run.task_results()
                if "Preview what would be created in the new namespace" in name]
    bookinfo = next((r for r in previews if "Bookinfo" in r.get("msg", "") or "Deployment/" in r.get("msg", "")), None)
    assert bookinfo and bookinfo.get("changed"), [r.get("msg") for r in previews]
    msg = bookinfo["msg"]
    assert f"The namespace {ns} does not exist yet" in msg and "istio-injection=enabled" in msg, msg
    for deployment in BOOKINFO_DEPLOYMENTS:
        assert f"Deployment/{deployment}" in msg, msg
    for app in BOOKINFO_APPS:
        assert f"Service/{app}" in msg, msg
    # The other roles that write into the application namespace say so too,
    # rather than failing on a 404 from the dry run.
    others = " ".join(r.get("msg", "") for r in previews if r is not bookinfo)
    assert f"PeerAuthentication {ns}/" in others, others
    assert f"VirtualService {ns}/" in others and f"Gateway {ns}/" in others, others
    # The namespace itself is a dry-run create: the API server's answer (the
    # namespace with its label) is in the result, and only the namespace.
    ns_task = next(r for name, _h, r in run.task_results()
                   if "Label the namespace and deploy Bookinfo" in name)
    dumped = json.dumps(ns_task.get("result"))
    assert ns_task.get("changed") and f'"name": "{ns}"' in dumped and '"istio-injection": "enabled"' in dumped, ns_task
    assert '"kind": "Deployment"' not in dumped, dumped[:2000]


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_namespace_labels_and_injection(k8s, combination):
    install_vars, wanted = COMBINATIONS[combination]
    revision = install_vars.get("istio_install_revision")
    sidecar = "istio_install_mode" not in install_vars
    core = client.CoreV1Api(k8s)
    created, existing = new_name("bi-new"), new_name("bi-old")
    with clean_before_and_after(k8s, install_vars):
        try:
            # 1. Istio and Bookinfo in a namespace the role creates.
            run = run_playbook(SITE, "--tags", "istio,bookinfo", extra_vars={**install_vars, "bookinfo_namespace": created})
            assert run.rc == 0, run.explain()
            assert namespace_labels(core, created) == {**wanted, **CREATED_BY_ROLE}, namespace_labels(core, created)
            assert_bookinfo_data_plane(k8s, created, sidecar, revision)

            # 2. An existing namespace with the other modes' labels and its owner's label.
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
                name=existing, labels={**STALE_LABELS, **OWNER_LABEL})))
            run = run_playbook(SITE, "--tags", "bookinfo", extra_vars={**install_vars, "bookinfo_namespace": existing})
            assert run.rc == 0, run.explain()
            assert namespace_labels(core, existing) == {**wanted, **OWNER_LABEL}, namespace_labels(core, existing)
            assert_bookinfo_data_plane(k8s, existing, sidecar, revision)

            # 3. A rerun changes nothing in the namespace the role created (the
            # case that went wrong); the existing namespace's rerun is checked
            # once, with the default install (suite time: each run costs a
            # minute on the loaded CI machine).
            for ns in (created, existing) if combination == "sidecar" else (created,):
                again = run_playbook(SITE, "--tags", "bookinfo", extra_vars={**install_vars, "bookinfo_namespace": ns})
                assert again.rc == 0 and again.changed == 0, again.explain()

            if combination == "sidecar":
                preview_new_namespace(core)
                # 4. Teardown removes what the role created: the namespace it
                # created goes; the one that existed stays, with its owner's
                # label and without the mesh labels or Bookinfo.
                for ns in (created, existing):
                    down = run_playbook(TEARDOWN, "--tags", "bookinfo", extra_vars={"bookinfo_namespace": ns})
                    assert down.rc == 0, down.explain()
                names = {n.metadata.name for n in core.list_namespace().items
                         if not n.metadata.deletion_timestamp}
                assert created not in names and existing in names, names
                assert namespace_labels(core, existing) == OWNER_LABEL, namespace_labels(core, existing)
                assert not client.AppsV1Api(k8s).list_namespaced_deployment(existing).items
        finally:
            # A fresh cluster for the next combination. teardown.yml for each
            # install mode is tested in test_istio_options.py (revision,
            # ambient) and test_site_istio_bookinfo.py (default).
            reset_cluster()
