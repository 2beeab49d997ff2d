"""Speed of servicemesh.istio.proxy_config_info from the `istiod` source on the
local test cluster (issue 10): one pod's summary, and all Bookinfo pods.

Run inside the cluster's network namespace, on a cluster without Istio:
    hack/testcluster/cluster.sh exec -- .venv/bin/python benchmarks/bench_proxy_config.py --reps 5

It installs Istio and Bookinfo (site.yml --tags istio,bookinfo) in the
namespace smistio-bench, then measures, REPS times each, medians printed:
  logic, one pod     - the module's logic called in this process (what the
                       action plugin runs in the controller's worker): pod read,
                       xDS fetch of CDS+LDS+RDS from the real istiod, summary;
  logic, all pods    - the same for the 6 Bookinfo pods (per pod = total / 6);
  task, one pod      - one Ansible task (`ansible localhost -m`) in process;
  task, as a module  - the same with SERVICEMESH_ISTIO_IN_PROCESS=0.
Then it removes Istio and Bookinfo again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".collections"))
from ansible_collections.servicemesh.istio.plugins.module_utils import _proxy_info, _xds  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC  # noqa: E402  pylint: disable=wrong-import-position

NS = "smistio-bench"
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_NOCOLOR="1")


def run(cmd, env=None):
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def params(**kwargs):
    out = {k: v.get("default") for k, v in _proxy_info.PROXY_CONFIG_INFO_SPEC.items()}
    out.update({k: v.get("default") for k, v in WAIT_ARGUMENT_SPEC.items()})
    out.update(kubeconfig=os.environ["SMI_KUBECONFIG"], context=None, source="istiod", timeout=0, **kwargs)
    return out


def logic(**kwargs):
    start = time.monotonic()
    result = _proxy_info.run_proxy_config_info(params(**kwargs))
    elapsed = time.monotonic() - start
    if result.get("failed"):
        raise SystemExit(f"proxy_config_info failed: {result['msg']}")
    return elapsed, result


def task(in_process: bool, **args):
    env = dict(ENV, SERVICEMESH_ISTIO_IN_PROCESS="1" if in_process else "0")
    args = dict(args, kubeconfig=os.environ["SMI_KUBECONFIG"], source="istiod")
    return run([ROOT / ".venv/bin/ansible", "-i", ROOT / "inventories/local", "servicemesh_controller",
                "-m", "servicemesh.istio.proxy_config_info", "-a", json.dumps(args)], env)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    reps = parser.parse_args().reps
    playbook = [ROOT / ".venv/bin/ansible-playbook", "-i", ROOT / "inventories/local", "-e", f"bookinfo_namespace={NS}"]
    run(playbook + ["--tags", "istio,bookinfo", ROOT / "playbooks/site.yml"])
    try:
        assert _xds.import_xds() is None
        one = logic(namespace=NS, label_selectors=["app=productpage"])[1]["proxies"][0]["name"]
        times = {"logic, one pod": [], "logic, all 6 pods": [], "task, one pod, in process": [],
                 "task, one pod, as a module": []}
        for rep in range(reps):
            times["logic, one pod"].append(logic(namespace=NS, name=one)[0])
            elapsed, result = logic(namespace=NS, min_pods=6)
            assert len(result["proxies"]) == 6, result["summary"]
            times["logic, all 6 pods"].append(elapsed)
            times["task, one pod, in process"].append(task(True, namespace=NS, name=one))
            times["task, one pod, as a module"].append(task(False, namespace=NS, name=one))
            print(f"rep {rep + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
        print(f"\nmedians over {reps} repetitions:")
        for key, values in times.items():
            print(f"  {key:28s} {statistics.median(values):7.3f} s   (runs: {', '.join(f'{x:.3f}' for x in values)})")
        print(f"  per pod, all 6 pods           {statistics.median(times['logic, all 6 pods']) / 6:7.3f} s")
    finally:
        run(playbook + [ROOT / "playbooks/teardown.yml"])


if __name__ == "__main__":
    main()
