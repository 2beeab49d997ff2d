"""Mitogen, the opt-in accelerator (hack/mitogen-env.sh, docs/performance.md):
site.yml converges and its rerun changes nothing under the strategy
`mitogen_linear`, turned on the way the docs tell users to.

A cluster of its own (SMI_LC_NETNS, default `smistio-lc`, as the other life
cycle tests); ansible-playbook runs inside its namespace as `make site` runs
it, with `--tags istio,bookinfo` to keep the test short (Istio's three
charts, Bookinfo with its sidecars, their waits and checks: the applies,
Helm calls, waits and in-cluster reads every role is made of). While each run
goes, the test looks for Mitogen's interpreter among the run's processes
(its process title says `(mitogen:...)`), so that a run that quietly fell
back to Ansible's own strategy does not pass.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

# lc_env is the life cycle tests' fixture (a namespace and state directory of
# their own), used by name.
from test_cluster_lifecycle import CLUSTER, REPO_ROOT, lc_env, sh  # noqa: F401  pylint: disable=unused-import
from proc_tree import process_tree

MITOGEN_ENV = REPO_ROOT / "hack/mitogen-env.sh"


class MitogenSeen(threading.Thread):
    """Whether a process under PID had Mitogen's process title, sampled every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.seen, self.done = pid, False, threading.Event()

    def run(self):
        while not self.seen and not self.done.wait(0.2):
            for pid in process_tree(self.pid, include_self=False):
                try:
                    if b"(mitogen:" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        self.seen = True
                        break
                except OSError:
                    continue


def site_under_mitogen(env: dict, report: Path) -> dict:
    """site.yml --tags istio,bookinfo inside the cluster's namespace under mitogen_linear."""
    run_env = dict(env, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", SERVICEMESH_ISTIO_REPORT_PATH=str(report))
    for name in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
        run_env.pop(name, None)
    cmd = ["bash", str(CLUSTER), "exec", "--", "bash", str(MITOGEN_ENV), "--",
           str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", str(REPO_ROOT / "inventories/local"),
           "--tags", "istio,bookinfo", str(REPO_ROOT / "playbooks/site.yml")]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen = MitogenSeen(proc.pid)
    seen.start()
    stdout, stderr = proc.communicate(timeout=600)
    seen.done.set()
    seen.join()
    try:
        stats = json.loads(stdout).get("stats", {})
    except json.JSONDecodeError:
        stats = {}
    return {"rc": proc.returncode, "stats": stats, "seconds": time.monotonic() - started, "mitogen": seen.seen,
            "report": json.loads(report.read_text()) if report.exists() else {},
            "tail": stdout[-3000:] + stderr[-3000:]}


def test_site_converges_and_reruns_unchanged_under_mitogen(lc_env, tmp_path):
    started = sh(CLUSTER, "start", env=lc_env)
    assert started.returncode == 0, started.stdout + started.stderr
    converge = site_under_mitogen(lc_env, tmp_path / "converge.json")
    assert converge["rc"] == 0, converge["tail"]
    assert converge["mitogen"], "no process with Mitogen's title ran during the converge"
    assert converge["stats"]["localhost"]["changed"] > 0, converge["stats"]
    assert converge["report"]["result"] == "ok", converge["report"]

    rerun = site_under_mitogen(lc_env, tmp_path / "rerun.json")
    assert rerun["rc"] == 0, rerun["tail"]
    assert rerun["mitogen"], "no process with Mitogen's title ran during the rerun"
    stats = rerun["stats"]["localhost"]
    assert stats["changed"] == 0 and stats["failures"] == 0 and stats["unreachable"] == 0, stats
    bookinfo = next(s for s in rerun["report"]["steps"] if s["name"] == "bookinfo")
    assert "6 of 6 pods Ready, 6 with istio-proxy (2/2)" in bookinfo["verified"]["checks"], bookinfo
    print(f"mitogen_linear, --tags istio,bookinfo: converge {converge['seconds']:.1f} s, "
          f"no-op rerun {rerun['seconds']:.1f} s")
