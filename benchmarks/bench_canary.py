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
  bare k8s task      - the same VirtualService applied by a one-task playbook
                        with kubernetes.core.k8s (definition inline, client-side
                        apply, then server-side apply), the module run by a
                        wrapper interpreter that times the module process.
Then, once, the k8s module under cProfile (the split of its process: the
module's own work and its HTTP requests, source compiled from the AnsiballZ
zip, the rest imports), and the cost of starting Python and of importing the
Kubernetes client. Then it removes Istio and Bookinfo again.

--strategy default|mitogen|both: the Ansible strategy of the role's runs
(Ansible's default `linear`, Mitogen's `mitogen_linear` as hack/mitogen-env.sh
turns it on, or both, alternating within each repetition): role, whole run
and role, the shift are measured and compared with the plain way for each.
The install, the teardown and the breakdown of the apply (bare k8s task,
cProfile) always run with the default strategy: the breakdown times the
module process, which Mitogen does not start.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pstats
import shutil
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
from strategy import STRATEGIES, choices, strategy_env  # noqa: E402  pylint: disable=wrong-import-position

NS = "smistio-bench-canary"
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
VARS = {"bookinfo_namespace": NS, "canary_namespace": NS, "servicemesh_istio_analyze": False}
SHIFT_TASKS = ("Apply the VirtualService with the weights", "Confirm the weights reached the callers' routes")
KUBECTL_TIMES: list[float] = []


def playbook(*args, extra=None, strategy="default"):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({**VARS, **(extra or {})}, handle)
    start = time.monotonic()
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/local", "-e", f"@{handle.name}",
                           *args], cwd=ROOT, env=strategy_env(strategy, ENV), capture_output=True, text=True,
                          check=False)
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


# The module's interpreter for the bare k8s tasks: the AnsiballZ payload arrives on stdin (pipelining); the
# wrapper writes the module process' start and end, and with BENCH_PROFILE runs it under cProfile.
WRAPPER = """#!/bin/sh
f=$(mktemp "$BENCH_PROF_DIR/module-XXXXXX")
cat > "$f.py"
t0=$(date +%s.%N)
if [ -n "$BENCH_PROFILE" ]; then
  "$BENCH_PYTHON" -c 'import atexit, cProfile, runpy, sys
base = sys.argv[1]
sys.argv = [base + ".py"]
prof = cProfile.Profile()
atexit.register(lambda: (prof.disable(), prof.dump_stats(base + ".prof")))
prof.enable()
runpy.run_path(base + ".py", run_name="__main__")' "$f"
else
  "$BENCH_PYTHON" "$f.py"
fi
rc=$?
echo "$t0 $(date +%s.%N)" > "$f.wall"
exit $rc
"""


def bare_k8s(weights_list, server_side=False, profile=False):
    """The VirtualService applied by kubernetes.core.k8s alone, one task per weights: (task seconds, module
    process seconds) per task, and with ``profile`` the cProfile files of the module processes."""
    prof_dir = tempfile.mkdtemp(prefix="bench-canary-")
    wrapper = Path(prof_dir) / "python"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    tasks = []
    # A first task, left out of the figures, builds the module's AnsiballZ payload (the role's VirtualService task
    # finds it built by its DestinationRule task) and applies the weights already there.
    for weights in [weights_list[-1], *weights_list]:
        params = {"state": "present", "apply": True, "definition": virtual_service(weights)}
        if server_side:
            params["server_side_apply"] = {"field_manager": "servicemesh.istio", "force_conflicts": True}
        tasks.append({"name": f"bare apply {weights}", "kubernetes.core.k8s": params})
    play = [{"name": "bare kubernetes.core.k8s", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    book = Path(prof_dir) / "bare.yml"
    book.write_text(json.dumps(play))
    env = dict(strategy_env("default", ENV), BENCH_PROF_DIR=prof_dir, BENCH_PYTHON=sys.executable, BENCH_PROFILE="1" if profile else "")
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/local", str(book),
                           "-e", f"ansible_python_interpreter={wrapper}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bare k8s failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    task_times = [task_seconds({"plays": [{"tasks": [task]}]}, ("",)) for task in doc["plays"][0]["tasks"]]
    walls = []
    for path in sorted(glob.glob(f"{prof_dir}/module-*.wall"), key=os.path.getmtime):
        start, end = (float(x) for x in Path(path).read_text().split())
        walls.append(end - start)
    profiles = sorted(glob.glob(f"{prof_dir}/module-*.prof"), key=os.path.getmtime)
    stats = [profile_split(path) for path in profiles]
    shutil.rmtree(prof_dir)
    return task_times[1:], walls[1:], stats[1:]


def profile_split(path):
    """Seconds of one profiled k8s module process: all of it, the module's main() (its work after the imports),
    the HTTP requests to the API server, the source compiled from the AnsiballZ zip."""
    stats = pstats.Stats(path).stats  # {(file, line, func): (cc, nc, tottime, cumtime, callers)}
    out = {"total": 0.0, "main": 0.0, "requests": 0.0, "compile": 0.0}
    for (filename, _line, func), (_cc, _nc, tottime, cumtime, _callers) in stats.items():
        out["total"] += tottime
        if func == "main" and filename.endswith("plugins/modules/k8s.py"):
            out["main"] += cumtime
        elif func == "request" and filename.endswith("kubernetes/client/rest.py"):
            out["requests"] += cumtime
        elif func == "_compile_source" and "zipimport" in filename:
            out["compile"] += cumtime
    return out


def python_costs(reps=3):
    """Median seconds to start Python, and to start it and import the Kubernetes client as the module does."""
    def timed(code):
        runs = []
        for _rep in range(reps):
            start = time.monotonic()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.monotonic() - start)
        return statistics.median(runs)
    return timed("pass"), timed("import kubernetes.client, kubernetes.config, kubernetes.dynamic")


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
    KUBECTL_TIMES.append(time.monotonic() - start)
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
    parser.add_argument("--strategy", choices=[*STRATEGIES, "both"], default="default",
                        help="the Ansible strategy of the role's runs (mitogen: hack/mitogen-env.sh)")
    args = parser.parse_args()
    strategies = choices(args.strategy)
    print("installing Istio, Bookinfo and the 80/20 split (site.yml --tags istio,bookinfo,canary; "
          "a few minutes) ...", flush=True)
    elapsed, _doc = playbook("--tags", "istio,bookinfo,canary", "playbooks/site.yml")
    print(f"installed in {elapsed:.0f} s; {args.reps} reps of two shifts each way", flush=True)
    whole = {s: [] for s in strategies}
    shift = {s: [] for s in strategies}
    parts = {s: {task: [] for task in SHIFT_TASKS} for s in strategies}
    plain_runs = []
    bare = {"client-side apply": ([], []), "server-side apply": ([], [])}
    pairs = ({"v1": 50, "v2": 50}, {"v1": 80, "v2": 20})
    try:
        for rep in range(args.reps):
            for strategy in strategies if rep % 2 == 0 else strategies[::-1]:
                for weights in pairs:
                    elapsed, doc = playbook("--tags", "canary", "playbooks/site.yml", extra={"canary_weights": weights},
                                            strategy=strategy)
                    whole[strategy].append(elapsed)
                    shift[strategy].append(task_seconds(doc, SHIFT_TASKS))
                    for task in SHIFT_TASKS:
                        parts[strategy][task].append(task_seconds(doc, (task,)))
            for weights in pairs:
                plain_runs.append(plain(weights))
            for name, (tasks, walls) in bare.items():
                got_tasks, got_walls, _stats = bare_k8s(pairs, server_side=name == "server-side apply")
                tasks.extend(got_tasks)
                walls.extend(got_walls)
            print(f"rep {rep + 1}: " + "; ".join(f"{s}: role {fmt(whole[s][-2:])}, shift {fmt(shift[s][-2:])}"
                                                 for s in strategies)
                  + f"; plain {fmt(plain_runs[-2:])}, bare k8s task {fmt(bare['client-side apply'][0][-2:])}", flush=True)
        _tasks, _walls, profiled = bare_k8s(pairs * 2, profile=True)
        start_python, import_kubernetes = python_costs()
    finally:
        if not args.keep:
            print("removing Istio and Bookinfo (teardown.yml) ...", flush=True)
            playbook("playbooks/teardown.yml", extra={"istio_install_teardown_crds": True})
    plain_median = statistics.median(plain_runs)
    for strategy in strategies:
        label = "" if strategies == ["default"] else f" ({strategy})"
        for name, runs in (("role, whole run", whole[strategy]), ("role, the shift", shift[strategy])):
            print(f"{name}{label}: median {statistics.median(runs):.2f} s; runs {', '.join(f'{v:.2f}' for v in runs)}")
        for task, values in parts[strategy].items():
            print(f"  of the shift, {task}: median {statistics.median(values):.2f} s")
    print(f"plain: median {plain_median:.2f} s; runs {', '.join(f'{v:.2f}' for v in plain_runs)}")
    for strategy in strategies:
        label = "" if strategies == ["default"] else f" ({strategy})"
        print(f"ratio role shift / plain{label}: {statistics.median(shift[strategy]) / plain_median:.2f}; "
              f"whole run / plain: {statistics.median(whole[strategy]) / plain_median:.2f}")
    print("where the apply goes (kubernetes.core.k8s applying the same VirtualService, medians):")
    for name, (tasks, walls) in bare.items():
        print(f"  bare k8s task, {name}: task {statistics.median(tasks):.3f} s, of which the module process "
              f"{statistics.median(walls):.3f} s (the controller's part {statistics.median(tasks) - statistics.median(walls):.3f} s)")
    split = {key: statistics.median(p[key] for p in profiled) for key in profiled[0]}
    print(f"  under cProfile (slower than without), one module process: {split['total']:.3f} s, of which main() "
          f"{split['main']:.3f} s (the HTTP requests {split['requests']:.3f} s: /version, GET, PATCH), source "
          f"compiled from the AnsiballZ zip {split['compile']:.3f} s, the other imports "
          f"{split['total'] - split['main'] - split['compile']:.3f} s")
    print(f"  python -c pass: {start_python:.3f} s; python -c 'import kubernetes.client, .config, .dynamic': "
          f"{import_kubernetes:.3f} s")
    print(f"  kubectl apply (the plain way's apply alone): median {statistics.median(KUBECTL_TIMES):.3f} s")


def fmt(values):
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    main()
