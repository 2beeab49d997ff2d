"""Issue 15: molecule's scenarios (molecule/) on the local test cluster.

`default`: create (start the cluster, or use the one running in $SMI_NETNS)
-> converge (playbooks/site.yml) -> idempotence -> verify (playbooks/verify.yml)
-> destroy (teardown.yml, and stop the cluster only if create started it).

Inside `make test` the suite runs in the cluster's namespace with the cluster
up: molecule uses that cluster and leaves it running, and the mesh torn down.
Run alone outside the namespace (`.venv/bin/pytest tests/molecule`), it
starts a cluster of its own in $SMI_NETNS and stops it again.

Scenarios for the observability and canary roles come with those roles.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = REPO_ROOT / ".venv/bin"
CLUSTER = REPO_ROOT / "hack/testcluster/cluster.sh"

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def cluster_running() -> bool:
    return subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, timeout=120, check=False).returncode == 0


def test_scenarios_are_found_under_molecule_without_warning():
    env = dict(os.environ, MOLECULE_GLOB="molecule/*/molecule.yml", PATH=f"{BIN}:{os.environ['PATH']}", NO_COLOR="1")
    listed = subprocess.run([BIN / "molecule", "list"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    out = listed.stdout + listed.stderr
    assert "default" in out
    assert "should migrate" not in out, out


def failure_report(out: str) -> str:
    """What went wrong in a molecule run: each step's result, and the lines
    that say why (fatal, failed, idempotence, molecule's errors) with the
    task that printed them, then the end of the output."""
    lines = out.splitlines()
    keep: set[int] = set()
    for i, line in enumerate(lines):
        if "Executed: " in line:
            keep.add(i)
        elif re.search(r"^fatal:|^failed:|^\[ERROR\]|Idempotence test failed|CRITICAL|^ERROR", line):
            task = next((j for j in range(i, -1, -1) if lines[j].startswith("TASK [")), i)
            keep.update({task, *range(i, min(i + 8, len(lines)))})
    return "\n".join(lines[i] for i in sorted(keep)) + "\n[…]\n" + out[-2500:]


def test_default_scenario(capsys):
    running_before = cluster_running()
    env = dict(os.environ, MOLECULE_GLOB="molecule/*/molecule.yml", PATH=f"{BIN}:{os.environ['PATH']}",
               NO_COLOR="1", ANSIBLE_NOCOLOR="1", PY_COLORS="0")
    t0 = time.monotonic()
    proc = subprocess.run([BIN / "molecule", "test", "-s", "default"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    with capsys.disabled():
        print(f"\nmolecule test -s default: {elapsed:.0f} s (cluster {'already running' if running_before else 'started by create'})")
    assert proc.returncode == 0, failure_report(out)
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"default (➜|>) {step}: Executed: Successful", out), (step, out[-3000:])
    assert "Every Bookinfo app has Ready pods" in out, out[-3000:]
    assert "Teardown confirmed for cluster smistio" in out, out[-3000:]
    # destroy stops only a cluster that create started.
    assert cluster_running() == running_before
