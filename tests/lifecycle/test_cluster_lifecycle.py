"""Issue 2: the test cluster's own life cycle and its error messages.

Runs outside any network namespace (it creates its own, `smistio-lc`, with
its own state directory) and needs the binaries that `cluster.sh start`
built and cached; the main test cluster may run at the same time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER = REPO_ROOT / "hack/testcluster/cluster.sh"
BUILD = REPO_ROOT / "hack/testcluster/build.sh"
# Its own namespace, apart from the main cluster's; SMI_LC_NETNS lets people
# who share a machine run these tests side by side.
NETNS = os.environ.get("SMI_LC_NETNS", "smistio-lc")


@pytest.fixture
def lc_env(tmp_path):
    env = dict(os.environ, SMI_NETNS=NETNS, SMI_STATE=str(tmp_path / "state"))
    # A namespace left by an interrupted earlier run would make start refuse.
    subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True, check=False)
    yield env
    subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True, check=False)


def sh(*args, env=None, timeout=300):
    return subprocess.run(["bash", *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def netns_exists(name):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return name in [line.split()[0] for line in out.splitlines() if line.strip()]


def processes_using(path: str) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if path in line and "bin/pytest" not in line]


def test_warm_start_status_stop_leaves_nothing(lc_env):
    start = time.monotonic()
    started = sh(CLUSTER, "start", env=lc_env)
    warm_start_s = time.monotonic() - start
    assert started.returncode == 0, started.stdout + started.stderr
    assert "test cluster up" in started.stdout
    print(f"warm start: {warm_start_s:.1f} s")
    assert warm_start_s < 60, f"warm start took {warm_start_s:.1f} s"

    status = sh(CLUSTER, "status", env=lc_env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "API server: ready" in status.stdout and status.stdout.count(" Ready ") >= 2

    again = sh(CLUSTER, "start", env=lc_env)
    assert again.returncode == 0 and "already running" in again.stdout

    assert processes_using(lc_env["SMI_STATE"]), "no process of the cluster found while it runs"
    stopped = sh(CLUSTER, "stop", env=lc_env)
    assert stopped.returncode == 0, stopped.stderr
    assert not netns_exists(NETNS)
    assert processes_using(lc_env["SMI_STATE"]) == []
    status = sh(CLUSTER, "status", env=lc_env)
    assert status.returncode == 3 and "stopped" in status.stdout


def test_stale_state_is_refused_with_the_fix(lc_env):
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    started = sh(CLUSTER, "start", env=lc_env)
    assert started.returncode != 0
    assert "stale cluster state" in started.stderr and "cluster.sh stop" in started.stderr
    assert "Traceback" not in started.stderr
    assert sh(CLUSTER, "stop", env=lc_env).returncode == 0
    assert not netns_exists(NETNS)


def kubectl_in(env, *args):
    return sh(CLUSTER, "exec", "--", "kubectl", *args, env=env, timeout=60)


def test_a_crashed_cluster_is_restarted_with_its_data(lc_env):
    """kube-apiserver killed (as a crash would): status names it, start
    refuses and offers restart, restart brings the cluster back with the
    objects it had (etcd's data kept), and the pid files hold the real
    processes' pids."""
    started = sh(CLUSTER, "start", env=lc_env)
    assert started.returncode == 0, started.stdout + started.stderr
    made = kubectl_in(lc_env, "create", "configmap", "smistio-kept", "--from-literal=survives=restart")
    assert made.returncode == 0, made.stdout + made.stderr
    pidfile = Path(lc_env["SMI_STATE"]) / "run/kube-apiserver.pid"
    pid = int(pidfile.read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "kube-apiserver"
    os.kill(pid, 9)
    time.sleep(1)

    status = sh(CLUSTER, "status", env=lc_env)
    assert status.returncode == 1, status.stdout
    assert "kube-apiserver" in status.stdout and "NOT RUNNING" in status.stdout
    assert "cluster.sh restart" in status.stdout
    refused = sh(CLUSTER, "start", env=lc_env)
    assert refused.returncode != 0
    assert "not running: kube-apiserver" in refused.stderr and "cluster.sh restart" in refused.stderr, refused.stderr

    t0 = time.monotonic()
    restarted = sh(CLUSTER, "restart", env=lc_env)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    print(f"restart: {time.monotonic() - t0:.1f} s")
    assert "kept state" in restarted.stdout
    kept = kubectl_in(lc_env, "get", "configmap", "smistio-kept", "-o", "jsonpath={.data.survives}")
    assert kept.returncode == 0 and kept.stdout == "restart", kept.stdout + kept.stderr
    assert sh(CLUSTER, "status", env=lc_env).returncode == 0
    new_pid = int(pidfile.read_text())
    assert new_pid != pid and Path(f"/proc/{new_pid}/comm").read_text().strip() == "kube-apiserver"


def test_reset_from_inside_empties_the_cluster_and_keeps_the_lab(lc_env):
    """reset, run from inside the namespace as the cluster tests run it: the
    objects, the Service addresses on lo and the components' state go, the
    nodes come back Ready; the caller, the ACME lab (same process, same TSIG
    key) and the PKI stay. Without a running cluster it says what to do."""
    refused = sh(CLUSTER, "reset", env=lc_env)
    assert refused.returncode != 0 and "cluster.sh start" in refused.stderr, refused.stdout + refused.stderr
    started = sh(CLUSTER, "start", env=lc_env)
    assert started.returncode == 0, started.stdout + started.stderr
    state = Path(lc_env["SMI_STATE"])
    made = kubectl_in(lc_env, "create", "namespace", "smistio-gone")
    assert made.returncode == 0, made.stdout + made.stderr
    # An address as the workload runner adds for a Service's ClusterIP.
    added = sh(CLUSTER, "exec", "--", "ip", "addr", "add", "10.96.7.7/32", "dev", "lo", env=lc_env)
    assert added.returncode == 0, added.stderr
    lab_pid = (state / "run/acme-lab.pid").read_text()
    lab_vars = (state / "acme/site-vars.json").read_text()
    ca = (state / "pki/ca.crt").read_text()
    api_pid = (state / "run/kube-apiserver.pid").read_text()

    t0 = time.monotonic()
    reset = sh(CLUSTER, "exec", "--", "bash", CLUSTER, "reset", env=lc_env)
    print(f"reset: {time.monotonic() - t0:.1f} s")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "test cluster up" in reset.stdout
    gone = kubectl_in(lc_env, "get", "namespace", "smistio-gone")
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout + gone.stderr
    nodes = kubectl_in(lc_env, "get", "nodes", "--no-headers")
    assert nodes.stdout.count(" Ready ") == 2, nodes.stdout
    addrs = sh(CLUSTER, "exec", "--", "ip", "-brief", "addr", "show", "lo", env=lc_env)
    assert "10.96.7.7" not in addrs.stdout and "127.0.0.1" in addrs.stdout, addrs.stdout
    assert (state / "run/acme-lab.pid").read_text() == lab_pid
    assert (state / "acme/site-vars.json").read_text() == lab_vars
    assert (state / "pki/ca.crt").read_text() == ca
    assert (state / "run/kube-apiserver.pid").read_text() != api_pid
    assert sh(CLUSTER, "status", env=lc_env).returncode == 0


def test_restart_without_state_says_to_start(lc_env):
    proc = sh(CLUSTER, "restart", env=lc_env)
    assert proc.returncode != 0
    assert "no cluster state to restart" in proc.stderr and "cluster.sh start" in proc.stderr
    assert not netns_exists(NETNS)


@pytest.fixture
def scripts_for_anyone():
    """A copy of hack/testcluster that any user can read and enter: the clone
    itself may live where other users cannot (root's home is 0700), and the
    not-root test runs the script as nobody."""
    top = Path(tempfile.mkdtemp(prefix="smistio-lc-scripts-"))
    try:
        shutil.copytree(CLUSTER.parent, top / "hack/testcluster", ignore=shutil.ignore_patterns("__pycache__"))
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield top
    finally:
        shutil.rmtree(top)


def test_not_root_is_refused_with_the_fix(lc_env, scripts_for_anyone):
    cluster = scripts_for_anyone / "hack/testcluster/cluster.sh"
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(cluster), "start"],
        env=lc_env, cwd=scripts_for_anyone, capture_output=True, text=True, check=False, timeout=60,
    )
    assert "Permission denied" not in proc.stderr, proc.stderr
    assert proc.returncode != 0
    assert "needs root" in proc.stderr and "sudo" in proc.stderr
    assert not netns_exists(NETNS)


def test_missing_go_is_refused_with_the_fix(tmp_path):
    # An empty cache forces a build; a PATH without Go makes it impossible.
    env = dict(os.environ, SMI_CACHE=str(tmp_path / "cache"), PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    assert shutil.which("go", path=env["PATH"]) is None
    proc = sh(BUILD, "etcd", env=env, timeout=60)
    assert proc.returncode != 0
    assert "Go is not installed" in proc.stderr and "install Go" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_component_is_refused():
    proc = sh(BUILD, "minikube", timeout=60)
    assert proc.returncode != 0 and "unknown component 'minikube'" in proc.stderr
