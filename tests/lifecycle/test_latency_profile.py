"""Issue 17: the test cluster's latency profile (SMI_PROFILE, hack/testcluster/latency.py).

Starts a cluster of its own (SMI_LC_NETNS, default `smistio-lc`, as the other
life cycle tests) on the realistic profile and shows, by the clock: a pod
becomes Ready only after its images' pull and its start, each within the
bounds of the figures in docs/testing.md; a LoadBalancer Service gets its
address after the provisioning time; the same seed gives the same delays
after a reset, another seed others; and `instant` (the default, what the
suite runs on) stays instant. Images are never pulled here: the delays are
the profile's, played by KWOK and the LB controller.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# lc_env is the life cycle tests' fixture (a namespace and state directory of
# their own), used by name.
from test_cluster_lifecycle import CLUSTER, REPO_ROOT, lc_env, netns_exists, sh  # noqa: F401  pylint: disable=unused-import

sys.path.insert(0, str(REPO_ROOT / "hack/testcluster"))
import latency  # noqa: E402  pylint: disable=wrong-import-position

# Two pods with images of different sizes (cert-manager's webhook, Grafana)
# and one LoadBalancer Service, created at once inside the namespace; prints
# per object the seconds until Ready (or the address) and the annotations.
MEASURE = r"""
import json, sys, time
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()
images = json.loads(sys.argv[1])
with_lb = sys.argv[2] == "lb"
start = time.monotonic()
for name, image in images.items():
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "kwok-worker-1", "containers": [{"name": "app", "image": image}]}})
if with_lb:
    core.create_namespaced_service("default", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lat-lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
out = {}
while len(out) < len(images) + with_lb and time.monotonic() - start < 120:
    for name in images:
        if name in out:
            continue
        pod = core.read_namespaced_pod(name, "default")
        if any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])):
            out[name] = {"seconds": time.monotonic() - start, "annotations": pod.metadata.annotations or {}}
    if with_lb and "lat-lb" not in out:
        svc = core.read_namespaced_service("lat-lb", "default")
        if svc.status.load_balancer and svc.status.load_balancer.ingress:
            out["lat-lb"] = {"seconds": time.monotonic() - start, "ip": svc.status.load_balancer.ingress[0].ip}
    time.sleep(0.1)
print(json.dumps(out))
"""
IMAGES = {"lat-webhook": "quay.io/jetstack/cert-manager-webhook:v1.21.2", "lat-grafana": "docker.io/grafana/grafana:12.3.1"}
# A pod's measured time to Ready: its delay, plus the annotator's and KWOK's
# reaction and this loop's polling (loaded machine), never less.
SLACK_S = 2.5


def measure(env, lb: bool = False) -> dict:
    res = sh(CLUSTER, "exec", "--", REPO_ROOT / ".venv/bin/python", "-c", MEASURE, json.dumps(IMAGES),
             "lb" if lb else "-", env=env, timeout=200)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == set(IMAGES) | ({"lat-lb"} if lb else set()), f"not all Ready or addressed in 120 s: {out}"
    return out


def bounds(image: str) -> tuple[float, float]:
    """The documented figures, jitter at both ends (docs/testing.md)."""
    base = latency.pull_seconds(image) + latency.START_S
    return base * (1 - latency.JITTER), base * (1 + latency.JITTER)


def test_realistic_profile_delays_pods_and_the_lb_the_same_for_a_seed(lc_env):
    bad = sh(CLUSTER, "start", env=dict(lc_env, SMI_PROFILE="fast"))
    assert bad.returncode != 0 and "SMI_PROFILE=fast is not a latency profile" in bad.stderr
    assert not netns_exists(lc_env["SMI_NETNS"]), "a refused profile must change nothing"

    env = dict(lc_env, SMI_PROFILE="realistic", SMI_PROFILE_SEED="7")
    started = sh(CLUSTER, "start", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "realistic latency profile" in started.stdout
    assert json.loads(Path(lc_env["SMI_STATE"], "profile.json").read_text()) == {"profile": "realistic", "seed": 7}
    status = sh(CLUSTER, "status", env=lc_env)
    assert status.returncode == 0 and "latency profile: realistic" in status.stdout
    assert "pod-latency" in status.stdout
    # A running cluster on another profile is not taken for the one asked for.
    other = sh(CLUSTER, "start", env=dict(lc_env, SMI_PROFILE="instant"))
    assert other.returncode != 0 and "on the realistic latency profile" in other.stderr
    assert "SMI_PROFILE=instant hack/testcluster/cluster.sh reset" in other.stderr

    first = measure(lc_env, lb=True)
    delays = {}
    for name, image in IMAGES.items():
        delay = float(first[name]["annotations"][latency.DELAY_ANNOTATION])
        low, high = bounds(image)
        assert low <= delay <= high, f"{name}: delay {delay} s outside the profile's {low:.1f} to {high:.1f} s"
        assert delay <= first[name]["seconds"] <= delay + SLACK_S, f"{name}: Ready after {first[name]['seconds']:.1f} s, delay {delay} s"
        assert image in first[name]["annotations"][latency.WHY_ANNOTATION]
        delays[name] = delay
    # Per image: Grafana's pull is much longer than the webhook's.
    assert first["lat-grafana"]["seconds"] > first["lat-webhook"]["seconds"] + 1
    lb_delay = latency.Profile("realistic", 7).lb_delay("default", "lat-lb")
    assert latency.LB_S * (1 - latency.JITTER) <= lb_delay <= latency.LB_S * (1 + latency.JITTER)
    assert lb_delay <= first["lat-lb"]["seconds"] <= lb_delay + SLACK_S, first["lat-lb"]
    assert first["lat-lb"]["ip"].startswith("127.0.100.")

    # The same seed after a reset (a fresh etcd, fresh pods with new uids): the same delays.
    reset = sh(CLUSTER, "reset", env=lc_env)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    again = measure(lc_env)
    assert {n: float(again[n]["annotations"][latency.DELAY_ANNOTATION]) for n in IMAGES} == delays
    # Another seed: other delays, the same bounds.
    reset = sh(CLUSTER, "reset", env=dict(lc_env, SMI_PROFILE_SEED="8"))
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert json.loads(Path(lc_env["SMI_STATE"], "profile.json").read_text()) == {"profile": "realistic", "seed": 8}
    other = measure(lc_env)
    for name, image in IMAGES.items():
        delay = float(other[name]["annotations"][latency.DELAY_ANNOTATION])
        assert delay != delays[name]
        assert bounds(image)[0] <= delay <= bounds(image)[1]
        assert delay <= other[name]["seconds"] <= delay + SLACK_S

    # restart keeps the recorded profile and refuses to change it.
    refused = sh(CLUSTER, "restart", env=dict(lc_env, SMI_PROFILE="instant"))
    assert refused.returncode != 0 and "restart keeps it" in refused.stderr

    # Instant, the default: nothing waits, no annotator, the checked-in stages.
    reset = sh(CLUSTER, "reset", env=dict(lc_env, SMI_PROFILE="instant"))
    assert reset.returncode == 0, reset.stdout + reset.stderr
    status = sh(CLUSTER, "status", env=lc_env)
    assert "latency profile: instant" in status.stdout and "pod-latency" not in status.stdout
    instant = measure(lc_env, lb=True)
    for name in [*IMAGES, "lat-lb"]:
        assert instant[name]["seconds"] < 2, f"{name} took {instant[name]['seconds']:.1f} s on the instant profile"
    for name in IMAGES:
        assert latency.DELAY_ANNOTATION not in instant[name]["annotations"]
    assert not Path(lc_env["SMI_STATE"], "kwok").exists()
