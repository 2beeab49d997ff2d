"""Speed of one canary weight shift on the local test cluster (issue 14): the
role against a plain `kubectl apply` plus polling for the same confirmation.

Run inside the cluster's network namespace, on a cluster without Istio:
    hack/testcluster/cluster.sh exec -- .venv/bin/python benchmarks/bench_canary.py --reps 3

It installs Istio, Bookinfo and the 80/20 split (site.yml --tags
istio,bookinfo,canary) in the namespace smistio-bench-canary, then, REPS
times each, alternating the weights between 50/50 and 80/20, medians printed:
  role, whole run     - `ansible-playbook site.yml --tags canary -e ...`:
                        preflight (inputs, Service, pods, other
                        VirtualServices), the DestinationRule and its pushed
                        clusters, the VirtualService, and the confirmation
                        that istiod pushed the weights to productpage's proxy;
  role, the shift     - the two tasks of that run that shift: apply the
                        VirtualService and confirm the weights on
                        productpage's proxy (json callback's task times);
  plain               - `kubectl apply -f` of the same VirtualService, then
                        polling istiod (xDS, the same reader) every 0.1 s
                        until productpage's route shows the weights.
Then it removes Istio and Bookinfo again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".collections"))
from ansible_collections.servicemesh.istio.plugins.module_utils import _proxy_info  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC  # noqa: E402  pylint: disable=wrong-import-position

NS = "smistio-bench-canary"
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
VARS = {"bookinfo_namespace": NS, "canary_namespace": NS, "servicemesh_istio_analyze": False}
SHIFT_TASKS = ("Apply the VirtualService with the weights", "Confirm the weights reached the callers' routes")


def playbook(*args, extra=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({**VARS, **(extra or {})}, handle)
    start = time.monotonic()
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/local", "-e", f"@{handle.name}",
                           *args], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    os.unlink(handle.name)
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def task_seconds(doc, suffixes):
    total = 0.0
    for play in doc["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(suffixes):
                duration = task["task"]["duration"]
                start = datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
                total += (end - start).total_seconds()
    return total


def virtual_service(weights):
    route = [{"destination": {"host": "reviews", "subset": k}, "weight": v} for k, v in weights.items()]
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": NS,
                         "labels": {"app.kubernetes.io/managed-by": "servicemesh.istio", "servicemesh.istio/role": "canary"}},
            "spec": {"hosts": ["reviews"], "http": [{"route": route}]}}


def plain(weights):
    """kubectl apply, then poll istiod for productpage's route (the same xDS reader, no Ansible)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(virtual_service(weights), handle)
    params = {k: v.get("default") for k, v in _proxy_info.PROXY_CONFIG_INFO_SPEC.items()}
    params.update({k: v.get("default") for k, v in WAIT_ARGUMENT_SPEC.items()})
    params.update(kubeconfig=os.environ["SMI_KUBECONFIG"], context=None, source="istiod", namespace=NS,
                  label_selectors=["app=productpage"], hosts=["reviews"], timeout=0)
    want = {k: v for k, v in weights.items() if v}
    start = time.monotonic()
    subprocess.run(["kubectl", "--kubeconfig", os.environ["SMI_KUBECONFIG"], "apply", "-f", handle.name],
                   check=True, capture_output=True)
    while True:
        result = _proxy_info.run_proxy_config_info(params)
        routes = [r for p in result["proxies"] for v in p["routes"] for r in v["routes"] if r["destinations"]]
        got = {d["subset"]: d["weight"] for d in routes[0]["destinations"]} if routes else {}
        if {k: v for k, v in got.items() if v} == want:
            break
        if time.monotonic() - start > 60:
            raise SystemExit(f"istiod did not push {want} in 60 s (last {got})")
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    os.unlink(handle.name)
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave Istio and Bookinfo installed")
    args = parser.parse_args()
    print("installing Istio, Bookinfo and the 80/20 split (site.yml --tags istio,bookinfo,canary; "
          "a few minutes) ...", flush=True)
    elapsed, _doc = playbook("--tags", "istio,bookinfo,canary", "playbooks/site.yml")
    print(f"installed in {elapsed:.0f} s; {args.reps} reps of two shifts each way", flush=True)
    whole, shift, plain_runs = [], [], []
    parts = {task: [] for task in SHIFT_TASKS}
    try:
        for rep in range(args.reps):
            for weights in ({"v1": 50, "v2": 50}, {"v1": 80, "v2": 20}):
                elapsed, doc = playbook("--tags", "canary", "playbooks/site.yml", extra={"canary_weights": weights})
                whole.append(elapsed)
                shift.append(task_seconds(doc, SHIFT_TASKS))
                for task in SHIFT_TASKS:
                    parts[task].append(task_seconds(doc, (task,)))
            for weights in ({"v1": 50, "v2": 50}, {"v1": 80, "v2": 20}):
                plain_runs.append(plain(weights))
            print(f"rep {rep + 1}: role {whole[-2:]}, shift {shift[-2:]}, plain {plain_runs[-2:]}", flush=True)
    finally:
        if not args.keep:
            print("removing Istio and Bookinfo (teardown.yml) ...", flush=True)
            playbook("playbooks/teardown.yml", extra={"istio_install_teardown_crds": True})
    med = {name: statistics.median(values) for name, values in
           (("role, whole run", whole), ("role, the shift", shift), ("plain", plain_runs))}
    for name, value in med.items():
        runs = {"role, whole run": whole, "role, the shift": shift, "plain": plain_runs}[name]
        print(f"{name}: median {value:.2f} s; runs {', '.join(f'{v:.2f}' for v in runs)}")
    for task, values in parts.items():
        print(f"  of the shift, {task}: median {statistics.median(values):.2f} s")
    print(f"ratio role shift / plain: {med['role, the shift'] / med['plain']:.2f}; "
          f"whole run / plain: {med['role, whole run'] / med['plain']:.2f}")


if __name__ == "__main__":
    main()
