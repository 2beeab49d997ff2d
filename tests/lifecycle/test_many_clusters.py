"""Issue 17, many clusters from one inventory: one inventory host per
cluster, one site.yml run converging them side by side (Ansible's forks),
each cluster's failure its own, one report with a section per cluster.

Two local test clusters of their own (network namespaces `<SMI_LC_NETNS>-a`
and `-b`, state under the test's tmp_path). ansible-playbook runs here,
outside both namespaces, as a controller does; each host's modules run
inside its cluster's namespace through its `ansible_python_interpreter`
(hack/testcluster/in-cluster-python with that cluster's SMI_NETNS and
SMI_STATE), the way modules run on a remote or execution node. So this also
runs every role's modules the module way, not in the controller's process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from proc_tree import process_tree

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER = REPO_ROOT / "hack/testcluster/cluster.sh"
NETNS = os.environ.get("SMI_LC_NETNS", "smistio-lc")
SITE = REPO_ROOT / "playbooks/site.yml"
HOSTS = ("cluster-a", "cluster-b")


def cluster_env(tmp_path: Path, host: str) -> dict:
    return dict(os.environ, SMI_NETNS=f"{NETNS}-{host[-1]}", SMI_STATE=str(tmp_path / host))


def in_cluster(env: dict, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), "exec", "--", *cmd], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """Two fresh test clusters and an inventory with one host for each."""
    tmp_path = tmp_path_factory.mktemp("many")
    envs = {host: cluster_env(tmp_path, host) for host in HOSTS}
    for env in envs.values():
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True, check=False)
    try:
        for host, env in envs.items():
            started = subprocess.run(["bash", str(CLUSTER), "start"], env=env, capture_output=True, text=True,
                                     timeout=600, check=False)
            assert started.returncode == 0, f"{host}: {started.stdout[-2000:]}{started.stderr[-2000:]}"
        inventory = tmp_path / "inventory"
        shutil.copytree(REPO_ROOT / "inventories/local/group_vars", inventory / "group_vars")
        hosts = {}
        for host, env in envs.items():
            python = tmp_path / f"python-{host}"
            python.write_text(f"#!/usr/bin/env bash\nexport SMI_NETNS={env['SMI_NETNS']} SMI_STATE={env['SMI_STATE']}\n"
                              f"exec {REPO_ROOT}/hack/testcluster/in-cluster-python \"$@\"\n")
            python.chmod(0o755)
            hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": str(python),
                           "servicemesh_istio_kubeconfig": f"{env['SMI_STATE']}/kubeconfig"}
        (inventory / "hosts.yml").write_text(yaml.safe_dump(
            {"all": {"children": {"servicemesh_controller": {"hosts": hosts}}}}))
        yield {"envs": envs, "inventory": inventory, "tmp": tmp_path}
    finally:
        for env in envs.values():
            subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True, check=False)


class PeakRss(threading.Thread):
    """The largest sum of RSS over a process and its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            total = 0
            for pid in process_tree(self.pid):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except OSError:
                    continue
            self.peak_kib = max(self.peak_kib, total)


def site(clusters, *args: str, limit: str = "") -> dict:
    """One site.yml run against the inventory's clusters; its stats, report, time and peak memory."""
    report = clusters["tmp"] / f"report-{time.monotonic_ns()}.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_NOCOLOR="1", SERVICEMESH_ISTIO_REPORT_PATH=str(report), ANSIBLE_SHOW_CUSTOM_STATS="1")
    cmd = [str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", str(clusters["inventory"]), "--forks", "2", *args]
    if limit:
        cmd += ["--limit", limit]
    started = time.monotonic()
    proc = subprocess.Popen([*cmd, str(SITE)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    memory = PeakRss(proc.pid)
    memory.start()
    stdout, stderr = proc.communicate(timeout=1200)
    memory.done.set()
    memory.join()
    seconds = time.monotonic() - started
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        doc = {}
    stats = doc.get("stats", {})
    return {"rc": proc.returncode, "stats": stats, "seconds": seconds, "peak_mib": memory.peak_kib / 1024,
            "custom_stats": doc.get("global_custom_stats", {}),
            "report": json.loads(report.read_text()) if report.exists() else {}, "stderr": stderr[-3000:]}


def releases_and_deployments(env: dict) -> tuple[list[tuple[str, str]], list[str]]:
    helm = in_cluster(env, "helm", "list", "-A", "-a", "-o", "json")
    assert helm.returncode == 0, helm.stderr
    deployments = in_cluster(env, "kubectl", "get", "deployments", "-n", "default", "-o", "name")
    return (sorted((r["name"], r["status"]) for r in json.loads(helm.stdout)),
            sorted(deployments.stdout.split()))


def test_one_run_converges_two_clusters_side_by_side_each_verified(clusters):
    alone = site(clusters, "--tags", "istio,bookinfo", limit="cluster-a")
    assert alone["rc"] == 0, alone
    reset = subprocess.run(["bash", str(CLUSTER), "reset"], env=clusters["envs"]["cluster-a"], capture_output=True,
                           text=True, timeout=300, check=False)
    assert reset.returncode == 0, reset.stderr
    both = site(clusters, "--tags", "istio,bookinfo")
    assert both["rc"] == 0, both
    assert set(both["stats"]) == set(HOSTS) and all(s["failures"] == 0 for s in both["stats"].values()), both
    for host in HOSTS:
        releases, deployments = releases_and_deployments(clusters["envs"][host])
        assert releases == [("istio-base", "deployed"), ("istio-ingressgateway", "deployed"),
                            ("istiod", "deployed")], (host, releases)
        assert len(deployments) == 6, (host, deployments)
    report = both["report"]
    assert report["result"] == "ok" and [c["host"] for c in report["clusters"]] == list(HOSTS), report
    for cluster in report["clusters"]:
        bookinfo = next(s for s in cluster["steps"] if s["name"] == "bookinfo")
        assert "6 of 6 pods Ready, 6 with istio-proxy (2/2)" in bookinfo["verified"]["checks"], cluster
    # What AWX keeps as the job's artifacts (set_stats, not per host): each cluster's record under its host.
    by_host = both["custom_stats"].get("istio_mesh_report_by_host", {})
    assert set(by_host) == set(HOSTS), both["custom_stats"]
    for host in HOSTS:
        assert set(by_host[host]) == {"istio_install", "bookinfo"}, (host, by_host[host])
        assert "6 of 6 pods Ready, 6 with istio-proxy (2/2)" in by_host[host]["bookinfo"]["checks"], by_host[host]
    print(f"one cluster: {alone['seconds']:.1f} s, peak {alone['peak_mib']:.0f} MiB; "
          f"two clusters in one run: {both['seconds']:.1f} s, peak {both['peak_mib']:.0f} MiB; "
          f"ratio {both['seconds'] / alone['seconds']:.2f}")


def test_a_bad_input_on_one_cluster_stops_that_one_only(clusters):
    """cluster-b's application namespace is not a valid name: its preflight
    refuses it before any change there; cluster-a's run goes on."""
    inventory = clusters["inventory"] / "hosts.yml"
    saved = inventory.read_text()
    doc = yaml.safe_load(saved)
    doc["all"]["children"]["servicemesh_controller"]["hosts"]["cluster-b"]["bookinfo_namespace"] = "Bad_NS"
    doc["all"]["children"]["servicemesh_controller"]["hosts"]["cluster-a"]["bookinfo_namespace"] = "bookinfo-a"
    inventory.write_text(yaml.safe_dump(doc))
    try:
        run = site(clusters, "--tags", "bookinfo")
    finally:
        inventory.write_text(saved)
    assert run["rc"] != 0
    assert run["stats"]["cluster-a"]["failures"] == 0 and run["stats"]["cluster-b"]["failures"] >= 1, run["stats"]
    report = {c["host"]: c for c in run["report"]["clusters"]}
    assert run["report"]["result"] == "failed"
    assert report["cluster-a"]["result"] == "ok" and report["cluster-a"]["failed_step"] is None
    assert report["cluster-b"]["failed_step"]["step"] == "preflight", report["cluster-b"]
    assert "bookinfo_namespace" in report["cluster-b"]["failed_step"]["message"], report["cluster-b"]
    created = in_cluster(clusters["envs"]["cluster-a"], "kubectl", "get", "deployments", "-n", "bookinfo-a",
                         "-o", "name")
    assert len(created.stdout.split()) == 6, created
    nothing = in_cluster(clusters["envs"]["cluster-b"], "kubectl", "get", "namespaces", "-o", "name")
    assert "namespace/Bad_NS" not in nothing.stdout and "bad" not in nothing.stdout.lower()
