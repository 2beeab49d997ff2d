"""The whole site.yml against a plain serial helm/kubectl script, on the
latency profile the local test cluster runs (issue 17).

Run inside the cluster's namespace; the cluster is reset between runs
(`cluster.sh reset`, so it must be a cluster of your own):
    SMI_PROFILE=instant hack/testcluster/cluster.sh start     # or realistic
    hack/testcluster/cluster.sh exec -- .venv/bin/python benchmarks/bench_full_site.py --reps 3
The reset acts on the cluster that SMI_NETNS and SMI_STATE name in the
benchmark's environment: give both to `cluster.sh exec` for a cluster that
is not the default one. The no-op rerun alone, both strategies, no reset:
    hack/testcluster/cluster.sh exec -- .venv/bin/python benchmarks/bench_full_site.py \
        --noop-only --strategy both --reps 5

Per repetition: reset; site.yml as `make site` runs it (every role the test
cluster can run, hack/testcluster/site-vars.yml), timed, with its peak memory;
its no-op rerun, timed; reset; benchmarks/plain_full_site.sh (the tutorial's
steps with helm and kubectl and their waits, one after the other), timed.
Prints the medians, the ratio site/plain, the peak RSS of the ansible-playbook
process (and of its whole process tree, sampled every 0.2 s), the time per
role split into the calls that install (kubernetes.core.helm and k8s, helm_release), the waits
and reads (wait_for_ready, wait_for_certificate, wait_for_dns, k8s_info) and the
rest (checks, fetches, bookkeeping), and
the slowest tasks; with --json FILE everything as JSON.

--strategy default|mitogen|both: the Ansible strategy of the site.yml runs
(Ansible's default `linear`, Mitogen's `mitogen_linear` as hack/mitogen-env.sh
turns it on, or both); the converge runs with the first, the no-op rerun
once with each. --noop-only times only no-op reruns: no reset and no plain
script; one untimed site.yml run first converges the cluster (a cluster of
your own, converged or not), then REPS reruns with each strategy, alternating.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack/testcluster"))
import latency  # noqa: E402  pylint: disable=wrong-import-position
from strategy import STRATEGIES, choices, strategy_env  # noqa: E402  pylint: disable=wrong-import-position

VERSIONS = dict(
    line.split("=", 1) for line in (ROOT / "hack/testcluster/versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
ISTIO = VERSIONS["ISTIO_DEFAULT_SNAPSHOT"].strip().strip('"')
CERT_MANAGER = VERSIONS["CERT_MANAGER_VERSION"].strip().strip('"')
CHART_REPO = os.environ.get("SMI_CHART_REPO", "http://127.0.0.1:8879/charts")
MIRROR_ISTIO = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio")) / f"mirror/istio/{ISTIO}"
# The callbacks ansible.cfg enables (as `make site` runs), task profiling, and task_times.
CFG = configparser.ConfigParser(interpolation=None)
CFG.read(ROOT / "ansible.cfg")
CALLBACKS = [c.strip() for c in CFG.get("defaults", "callbacks_enabled", fallback="").split(",") if c.strip()]
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "benchmarks/callback_plugins"),
           ANSIBLE_CALLBACKS_ENABLED=",".join([*CALLBACKS, "ansible.posix.profile_tasks", "task_times"]))
SITE = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventories/local"),
        "-e", f"@{ROOT / 'hack/testcluster/site-vars.yml'}", str(ROOT / "playbooks/site.yml")]
# What a task's action counts as in the split per role: installs, waits and reads, the rest.
INSTALL_ACTIONS = {"kubernetes.core.helm", "kubernetes.core.k8s", "servicemesh.istio.helm_release"}
WAIT_ACTIONS = {"servicemesh.istio.wait_for_ready", "servicemesh.istio.wait_for_certificate",
                "servicemesh.istio.wait_for_dns", "kubernetes.core.k8s_info"}


def progress(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def rss_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(pid: int) -> list[int]:
    """PID and its descendants (from /proc/*/stat)."""
    children = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def run(cmd: list[str], what: str, env: dict | None = None) -> dict:
    """Run CMD; its wall time, the peak RSS of its own process (VmHWM) and of
    its process tree (sampled), and its output. Fails the benchmark on error."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or ENV, stdout=out, stderr=subprocess.STDOUT, text=True)
        peak = {"self": 0, "tree": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak["self"] = max(peak["self"], rss_kib(proc.pid, "VmHWM"))
                peak["tree"] = max(peak["tree"], sum(rss_kib(p, "VmRSS") for p in tree(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        last = start
        while proc.poll() is None:
            time.sleep(0.2)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                progress(f"  {what}: {last - start:.0f} s so far")
        done.set()
        sampler.join()
        elapsed = time.monotonic() - start
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (rc {proc.returncode}) after {elapsed:.1f} s:\n{text[-6000:]}")
    return {"seconds": round(elapsed, 2), "peak_rss_mib": round(peak["self"] / 1024, 1),
            "peak_tree_rss_mib": round(peak["tree"] / 1024, 1), "output": text}


def reset() -> None:
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "hack/testcluster/cluster.sh"), "reset"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cluster.sh reset failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    progress(f"  cluster reset ({time.monotonic() - start:.0f} s)")


def site(what: str, strategy: str = "default") -> tuple[dict, list[dict]]:
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as times:
        result = run(SITE, what, dict(strategy_env(strategy, ENV), SMI_TASK_TIMES=times.name))
        tasks = [json.loads(line) for line in Path(times.name).read_text().splitlines() if line]
    return result, tasks


def split_per_role(tasks: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"total": 0.0, "install": 0.0, "wait": 0.0, "rest": 0.0})
    for task in tasks:
        role = task["role"] or "(play)"
        kind = "install" if task["action"] in INSTALL_ACTIONS else "wait" if task["action"] in WAIT_ACTIONS else "rest"
        out[role]["total"] += task["seconds"]
        out[role][kind] += task["seconds"]
    return {role: {k: round(v, 2) for k, v in parts.items()} for role, parts in out.items()}


def noop_recap(rerun: dict) -> str:
    """The rerun's recap line; warns when it changed anything."""
    # The PLAY RECAP's host line ("localhost : ok=.. changed=.."), not the report's lines per step.
    recap = [line for line in rerun["output"].splitlines() if re.match(r"^\S+\s+:\s+ok=\d+\s+changed=", line)]
    if not recap or "changed=0" not in recap[-1]:
        progress(f"  WARNING: the no-op rerun changed something: {recap[-1:] or 'no recap'}")
    return recap[-1].split(":", 1)[-1].strip() if recap else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--strategy", choices=[*STRATEGIES, "both"], default="default",
                        help="the Ansible strategy of the site.yml runs (mitogen: hack/mitogen-env.sh)")
    parser.add_argument("--noop-only", action="store_true",
                        help="only no-op reruns on the cluster as it is (converged once first, untimed)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    strategies = choices(args.strategy)
    profile = latency.load(os.environ.get("SMI_STATE"))
    progress(f"profile {profile.name} (seed {profile.seed}), {args.reps} repetitions, "
             f"strategies {', '.join(strategies)}{', no-op reruns only' if args.noop_only else ''}")
    reruns = [f"site no-op rerun ({s})" for s in strategies]
    converge_name = f"site converge ({strategies[0]})"
    names = reruns if args.noop_only else [converge_name, *reruns, "plain script"]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    role_splits: dict[str, list] = {name: [] for name in names if name != "plain script"}
    slowest: dict[str, list] = {}
    recaps: dict[str, list[str]] = {name: [] for name in reruns}

    def timed_site(name: str, strategy: str, rep: int) -> None:
        progress(f"rep {rep + 1}: {name}")
        result, tasks = site(name, strategy)
        runs[name].append(result)
        role_splits[name].append(split_per_role(tasks))
        if rep == 0:
            slowest[name] = sorted(tasks, key=lambda t: -t["seconds"])[:15]
        if name in recaps:
            recaps[name].append(noop_recap(result))

    if args.noop_only:
        progress(f"converging once first (site.yml, {strategies[0]}; untimed)")
        converged, _tasks = site("site converge, untimed", strategies[0])
        progress(f"  converged in {converged['seconds']:.1f} s")
    for rep in range(args.reps):
        if not args.noop_only:
            reset()
            timed_site(converge_name, strategies[0], rep)
        # Alternating, so that a change of the machine's load falls on both.
        for strategy in strategies if rep % 2 == 0 else strategies[::-1]:
            timed_site(f"site no-op rerun ({strategy})", strategy, rep)
        if not args.noop_only:
            reset()
            progress(f"rep {rep + 1}: plain script")
            runs["plain script"].append(run(["bash", str(ROOT / "benchmarks/plain_full_site.sh"), CHART_REPO, ISTIO,
                                             str(MIRROR_ISTIO), CERT_MANAGER], "plain script"))
        progress(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]['seconds']:.1f} s" for k, v in runs.items()))
    if not args.noop_only:
        reset()
    medians = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    print(f"\nprofile {profile.name} (seed {profile.seed}), medians over {args.reps} repetitions:")
    for key, value in medians.items():
        print(f"  {key:30s} {value:7.1f} s   (runs: {', '.join(str(r['seconds']) for r in runs[key])})")
    for key, lines in recaps.items():
        print(f"  recaps of {key}: {'; '.join(sorted(set(lines)))}")
    ratio = None
    if not args.noop_only:
        ratio = medians[converge_name] / medians["plain script"]
        print(f"  site converge / plain script: {ratio:.2f}")
    if len(reruns) == 2:
        print(f"  no-op rerun, mitogen / default: {medians[reruns[1]] / medians[reruns[0]]:.2f}")
    for key in role_splits:
        print(f"  peak RSS of ansible-playbook, {key}: {max(r['peak_rss_mib'] for r in runs[key])} MiB "
              f"(its process tree: {max(r['peak_tree_rss_mib'] for r in runs[key])} MiB)")
    per_role = {}
    for run_name, splits in role_splits.items():
        roles = sorted({role for split in splits for role in split},
                       key=lambda r, splits=splits: -statistics.median(s.get(r, {}).get("total", 0) for s in splits))
        per_role[run_name] = {
            role: {part: round(statistics.median(s.get(role, {}).get(part, 0.0) for s in splits), 2)
                   for part in ("total", "install", "wait", "rest")} for role in roles}
        print(f"\n{run_name}, per role, medians (s): total = kubernetes.core installs (helm, k8s) + waits and reads + the rest")
        for role, parts in per_role[run_name].items():
            print(f"  {role:40s} {parts['total']:6.1f} = {parts['install']:5.1f} + {parts['wait']:5.1f} + {parts['rest']:5.1f}")
        print(f"slowest tasks of the first {run_name}:")
        for task in slowest[run_name]:
            print(f"  {task['seconds']:6.2f} s  {task['role'] or '(play)'}: {task['name']} ({task['action']})")
    if args.json:
        for results in runs.values():
            for r in results:
                r.pop("output", None)
        Path(args.json).write_text(json.dumps({
            "profile": profile.name, "seed": profile.seed, "reps": args.reps, "strategies": strategies,
            "noop_only": args.noop_only, "runs": runs, "medians": medians, "recaps": recaps,
            "site_over_plain": round(ratio, 3) if ratio else None, "per_role": per_role,
            "slowest_tasks": slowest}, indent=1))


if __name__ == "__main__":
    main()
