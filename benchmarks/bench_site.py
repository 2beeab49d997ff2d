"""Speed of site.yml (istio_install + bookinfo) against a plain helm/kubectl
script doing the same steps, on the local test cluster (issue 3).

Run inside the cluster's network namespace, on a cluster without Istio:
    hack/testcluster/cluster.sh exec -- .venv/bin/python benchmarks/bench_site.py --reps 3

Per repetition: teardown, site.yml converge (timed), its no-op rerun (timed),
`--tags bookinfo` alone (timed), teardown, plain_site.sh (timed), teardown,
floor_site.yml (timed: the three kubernetes.core.helm releases and one
kubernetes.core.k8s apply, nothing else, the least an Ansible run of the same
steps costs with the modules the collection must use). Prints the medians and
the ratios, and the 10 slowest tasks of one converge (ansible.posix.profile_tasks).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = dict(
    line.split("=", 1) for line in (ROOT / "hack/testcluster/versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
ISTIO = VERSIONS["ISTIO_DEFAULT_SNAPSHOT"].strip()
CHART_REPO = os.environ.get("SMI_CHART_REPO", "http://127.0.0.1:8879/charts")
BOOKINFO = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio")) / \
    f"mirror/istio/{ISTIO}/samples/bookinfo/platform/kube/bookinfo.yaml"
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_NOCOLOR="1")


def timed(cmd, env=None) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def playbook(name, *args, env=None):
    return timed([ROOT / ".venv/bin/ansible-playbook", ROOT / "playbooks" / name, *args], env)


def teardown():
    playbook("teardown.yml")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    results = {"site converge": [], "site no-op rerun": [], "site --tags bookinfo": [], "plain script": [],
               "floor (modules only)": []}
    profile = ""
    for rep in range(reps):
        teardown()
        env = dict(ENV, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks") if rep == 0 else None
        seconds, out = playbook("site.yml", "--tags", "istio,bookinfo", env=env)
        results["site converge"].append(seconds)
        if rep == 0:
            profile = "\n".join(line for line in out.splitlines() if re.search(r"-+ \d+\.\d+s$", line))
        results["site no-op rerun"].append(playbook("site.yml", "--tags", "istio,bookinfo")[0])
        results["site --tags bookinfo"].append(playbook("site.yml", "--tags", "bookinfo")[0])
        teardown()
        results["plain script"].append(timed(["bash", ROOT / "benchmarks/plain_site.sh", CHART_REPO, ISTIO, BOOKINFO])[0])
        teardown()
        floor_env = dict(ENV, SMI_BOOKINFO=BOOKINFO.read_text())
        results["floor (modules only)"].append(timed([ROOT / ".venv/bin/ansible-playbook", "-i", ROOT / "inventories/local",
                                                      ROOT / "benchmarks/floor_site.yml"], floor_env)[0])
        print(f"rep {rep + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in results.items()), flush=True)
    teardown()
    medians = {k: statistics.median(v) for k, v in results.items()}
    print("\nmedians over", reps, "repetitions:")
    for key, value in medians.items():
        print(f"  {key:22s} {value:6.1f} s   (runs: {', '.join(f'{x:.1f}' for x in results[key])})")
    plain = medians["plain script"]
    print(f"  converge / plain script ratio: {medians['site converge'] / plain:.2f}")
    print(f"  floor / plain script ratio:    {medians['floor (modules only)'] / plain:.2f}")
    print(f"  converge / floor ratio:        {medians['site converge'] / medians['floor (modules only)']:.2f}")
    print("\nslowest tasks of the first converge (profile_tasks):\n" + "\n".join(profile.splitlines()[:10]))


if __name__ == "__main__":
    main()
