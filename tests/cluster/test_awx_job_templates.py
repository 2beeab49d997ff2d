"""Issue 15: every AWX job template, run the way AWX runs it, against the
local test cluster.

No AWX server can run here. tests/awx_config.py renders what
playbooks/awx_configure.yml would make on AWX (with a settings file for this
cluster: tests/cluster/vars/awx-local.yml, the local inventory as the
inventory source, the cluster's kubeconfig in the kubeconfig credential) and
launches each job template with ansible-runner: the repository as the
project directory, the template's playbook, tags and limit, extra variables
from the template and its survey's defaults, the credentials' injectors
(the kubeconfig written to a private file, its path injected as
K8S_AUTH_KUBECONFIG and servicemesh_istio_kubeconfig), the inventory as AWX
imports it (ansible-inventory --list --export).

The local cluster runs no container: as for `make site`, the job templates
carry hack/testcluster/site-vars.yml as extra variables (no mTLS client
proof, no certificate issuance), through awx_configure_job_extra_vars.

The module expects a cluster without Istio and leaves an empty one, also when
a test stops early (conftest.reset_cluster).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from awx_config import Controller, render
from conftest import REPO_ROOT, SITE_ACME, SITE_VARS, reset_cluster

SETTINGS = REPO_ROOT / "tests/cluster/vars/awx-local.yml"
# SITE_ACME (conftest): the DNS zone's TSIG key goes into the ACME/TSIG
# credential, as a user would enter it.
P = "servicemesh.istio"
TAG_TEMPLATES = ["istio", "bookinfo", "ingress", "tls", "mtls", "observability", "canary", "canary shift"]


def istiod_deployments(k8s) -> list[str]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        found = client.AppsV1Api(k8s).list_namespaced_deployment("istio-system", label_selector="app=istiod")
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return [d.metadata.name for d in found.items]


def peer_authentications(k8s) -> list[dict]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        found = client.CustomObjectsApi(k8s).list_namespaced_custom_object(
            "security.istio.io", "v1", "default", "peerauthentications")
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return found["items"]


def local_settings() -> dict:
    """tests/cluster/vars/awx-local.yml with this cluster's TSIG key and the
    site variables as every job template's extra variables."""
    settings = yaml.safe_load(SETTINGS.read_text())
    acme = json.loads(SITE_ACME.read_text())
    settings.update(awx_configure_tsig_key_name=acme["tsig_name"], awx_configure_tsig_key_secret=acme["tsig_secret"],
                    awx_configure_job_extra_vars=yaml.safe_load(SITE_VARS.read_text()))
    return settings


@pytest.fixture(scope="module")
def controller(kubeconfig, k8s):
    if istiod_deployments(k8s):
        pytest.fail("Istio is already installed: this module expects a cluster without it "
                    "(playbooks/teardown.yml -e istio_install_teardown_crds=true)")
    settings = local_settings()
    settings["awx_configure_kubeconfig"] = Path(kubeconfig).read_text()
    try:
        yield Controller(render(settings))
    finally:
        reset_cluster()


def test_site_template_installs_the_mesh(controller, k8s, tmp_path):
    run = controller.launch(f"{P} site", tmp_path)
    assert run.status == "successful", run.explain()
    assert run.missing_answers == []
    assert run.changed > 0
    assert istiod_deployments(k8s) == ["istiod"]
    (pa,) = peer_authentications(k8s)
    assert pa["spec"]["mtls"]["mode"] == "STRICT"


def test_kubeconfig_comes_from_the_credential(controller, tmp_path):
    """The job reaches the cluster through the kubeconfig credential, not the
    inventory's: a credential whose kubeconfig names a closed port fails the
    preflight, before anything changes."""
    kubeconfig = yaml.safe_load(controller.credentials[f"{P} cluster"]["inputs"]["kubeconfig"])
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    run = controller.launch(f"{P} verify", tmp_path,
                            credential_inputs={f"{P} cluster": {"kubeconfig": yaml.safe_dump(kubeconfig)}})
    assert run.status == "failed", run.explain()
    assert run.changed == 0
    assert any("127.0.0.1:1" in m or "refused" in m.lower() for m in run.failure_messages()), run.explain()


def test_verify_template_passes(controller, tmp_path):
    run = controller.launch(f"{P} verify", tmp_path)
    assert run.status == "successful", run.explain()
    assert run.changed == 0
    assert "Every Bookinfo app has Ready pods, each with its istio-proxy sidecar" in run.task_names()


@pytest.fixture
def bearer_token(k8s):
    """A ServiceAccount bound to cluster-admin and a short-lived token for it
    (TokenRequest), as a user makes for AWX's bearer token credential."""
    from kubernetes import client

    core, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    name = "smistio-awx-test"
    core.create_namespaced_service_account("kube-system", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace="kube-system")]))
    try:
        token = core.create_namespaced_service_account_token(
            name, "kube-system", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                audiences=[], expiration_seconds=600))).status.token
        yield token
    finally:
        rbac.delete_cluster_role_binding(name)
        core.delete_namespaced_service_account(name, "kube-system")


def test_bearer_token_credential_reaches_the_cluster(kubeconfig, bearer_token, tmp_path):
    """With awx_configure_kubernetes_auth: bearer_token the cluster credential
    is AWX's built-in type (injected as K8S_AUTH_* variables) and the job
    templates drop the inventory's kubeconfig: the verify template still
    reaches the cluster, and a wrong token is refused."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    settings = local_settings()
    settings.update(awx_configure_kubernetes_auth="bearer_token", awx_configure_k8s_host=cluster["server"],
                    awx_configure_k8s_bearer_token=bearer_token, awx_configure_k8s_verify_ssl=True,
                    awx_configure_k8s_ssl_ca_cert=Path(cluster["certificate-authority"]).read_text())
    bearer = Controller(render(settings))
    assert bearer.credentials[f"{P} cluster"]["credential_type"] == "OpenShift or Kubernetes API Bearer Token"
    run = bearer.launch(f"{P} verify", tmp_path / "good")
    assert run.status == "successful", run.explain()
    run = bearer.launch(f"{P} verify", tmp_path / "bad",
                        credential_inputs={f"{P} cluster": {"bearer_token": bearer_token[:-4] + "AAAA"}})
    assert run.status == "failed", run.explain()
    assert any("401" in m or "Unauthorized" in m for m in run.failure_messages()), run.explain()


# The tag templates run for real after the site: one per role that has a
# template of its own beside the site's (tls, mtls; "canary shift" with its
# survey). The others are launched the same way with --list-tasks (their tags
# select their role's tasks): a real run of each would repeat, at about a
# minute apiece on the suite's shared cores, the second run that molecule's
# idempotence step and each role's own tests already make.
RUN_FOR_REAL = ("tls", "mtls", "canary shift")


@pytest.mark.parametrize("template", TAG_TEMPLATES)
def test_tag_templates_succeed_without_change(controller, tmp_path, template):
    """One template per tag of site.yml, each launched after the site: it
    succeeds and changes nothing, and the role its tag names ran (or, listed,
    is the role whose tasks its tags select)."""
    role = {"ingress": "ingress_tls", "tls": "ingress_tls", "istio": "istio_install",
            "mtls": "mtls_verify", "canary shift": "canary"}.get(template, template)
    if template not in RUN_FOR_REAL:
        run = controller.launch(f"{P} {template}", tmp_path, cmdline="--list-tasks")
        assert run.status == "successful", run.explain() + run.stdout[-2000:]
        # Every role lists one task under any tag (its arguments' check); the
        # role the tag names lists its own.
        listed = Counter(m.split(".")[-1] for m in re.findall(r"^\s+(servicemesh\.istio\.\w+) : ", run.stdout, re.M))
        assert listed[role] > 1, run.stdout[-3000:]
        assert all(n <= 1 for name, n in listed.items() if name not in (role, "preflight")), listed
        return
    run = controller.launch(f"{P} {template}", tmp_path)
    assert run.status == "successful", run.explain()
    assert run.changed == 0, run.explain()
    assert role in run.roles_run(), run.roles_run()


def test_teardown_refuses_without_the_confirmation(controller, k8s, tmp_path):
    run = controller.launch(f"{P} teardown", tmp_path)
    assert run.missing_answers == ["servicemesh_istio_teardown_confirm"]
    assert run.status == "failed", run.explain()
    assert run.changed == 0
    assert any("Teardown refused, nothing was removed" in m for m in run.failure_messages()), run.explain()
    assert istiod_deployments(k8s) == ["istiod"]


def test_teardown_refuses_a_wrong_cluster_name(controller, k8s, tmp_path):
    run = controller.launch(f"{P} teardown", tmp_path, answers={"servicemesh_istio_teardown_confirm": "production"})
    assert run.status == "failed", run.explain()
    assert run.changed == 0
    assert any("Teardown refused" in m and "smistio" in m for m in run.failure_messages()), run.explain()
    assert istiod_deployments(k8s) == ["istiod"]


def test_teardown_with_the_cluster_name_removes_the_mesh(controller, k8s, tmp_path):
    run = controller.launch(f"{P} teardown", tmp_path, answers={"servicemesh_istio_teardown_confirm": "smistio"})
    assert run.missing_answers == []
    assert run.status == "successful", run.explain()
    assert run.changed > 0
    assert istiod_deployments(k8s) == []
    assert peer_authentications(k8s) == []


def test_verify_template_fails_without_the_mesh(controller, tmp_path):
    run = controller.launch(f"{P} verify", tmp_path)
    assert run.status == "failed", run.explain()
    assert any("No available istiod Deployment" in m for m in run.failure_messages()), run.explain()
