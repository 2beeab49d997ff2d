"""Messages a new user meets first (issue 16): a kubeconfig path that does not
exist names the path and the variable that gave it, before anything else
runs. (Needs no running cluster; it lives here for run_playbook.)"""

from __future__ import annotations

from conftest import REPO_ROOT, run_playbook

SITE = REPO_ROOT / "playbooks/site.yml"


def test_a_missing_kubeconfig_names_the_variable_and_the_path(tmp_path):
    missing = tmp_path / "no-such-dir" / "kubeconfig.yaml"
    run = run_playbook(SITE, extra_vars={"servicemesh_istio_kubeconfig": str(missing)})
    assert run.rc != 0, run.explain()
    failures = run.failures()
    assert failures, run.explain()
    last = failures[-1]
    assert f"servicemesh_istio_kubeconfig is '{missing}'" in last and "there is no such file" in last, failures
    assert "No configuration found" not in " ".join(failures), failures
    # The preflight stopped the run: no task of another role ran.
    ran = {name for name, _host, _result in run.task_results()}
    assert not any("Istio" in name and "install" in name.lower() for name in ran), sorted(ran)
    assert run.changed == 0, run.explain()


def test_a_missing_kubeconfig_from_the_environment_is_named(tmp_path, monkeypatch):
    missing = tmp_path / "kubeconfig-from-env.yaml"
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(missing))
    run = run_playbook(SITE, extra_vars={"servicemesh_istio_kubeconfig": ""})
    assert run.rc != 0, run.explain()
    msg = " ".join(run.failures())
    assert f"the kubeconfig file '{missing}' does not exist (from K8S_AUTH_KUBECONFIG)" in msg, msg
    assert run.changed == 0, run.explain()
