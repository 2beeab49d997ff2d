"""The test cluster's latency profile: how long things take that take time on a real cluster.

Part of the local test cluster. ``cluster.sh start`` (and ``reset``) read
``SMI_PROFILE`` (``instant``, the default, or ``realistic``) and
``SMI_PROFILE_SEED`` (an integer, default 1) and record them in
``$SMI_STATE/profile.json``; every component that plays something with a
delay reads that file:

- ``instant``: nothing waits (what the test suite runs on). No component of
  this module runs and the KWOK stages are the ones in ``kwok/`` as they are.
- ``realistic``: a pod becomes Running and Ready only after its images are
  pulled and its containers started (``pod_delay``); a LoadBalancer Service
  gets its address after the cloud's provisioning time (``lb_delay``,
  lb_controller.py); istiod and cert-manager's controller, webhook and
  cainjector, which workload_runner.py runs as host processes, start only
  after their pod's pull and start delay (so they answer when their pod would
  have started, plus their own real start-up). Each delay is a base figure
  times a jitter drawn from the seed and what is delayed (never the random
  parts of a pod's name), so two runs with the same seed wait the same.

The figures and where they come from are in docs/testing.md ("The latency
profile"). Commands:

  latency.py annotate KUBECONFIG STATE_DIR   the pod annotator (realistic only):
      gives each scheduled pod ``smistio.test/ready-delay`` (seconds, with the
      reason in ``smistio.test/ready-delay-why``) and ``smistio.test/ready-at``
      (RFC 3339), which the realistic pod stage waits for
  latency.py kwok-stage SRC OUT              write the realistic variant of the
      pod-running stage SRC to OUT
  latency.py show STATE_DIR                  print the profile in use
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("instant", "realistic")
PROFILE_FILE = "profile.json"
DELAY_ANNOTATION = "smistio.test/ready-delay"
WHY_ANNOTATION = "smistio.test/ready-delay-why"
READY_AT_ANNOTATION = "smistio.test/ready-at"

# Image pull on a node that does not have the image: registry round trips
# (token, manifest, config) plus the compressed layers downloaded and
# extracted. Sizes are compressed linux/amd64 sizes (estimates, see
# docs/testing.md); PULL_MB_S is the effective rate of download plus
# extraction on a cloud node pulling from a public registry (an estimate).
PULL_OVERHEAD_S = 1.0
PULL_MB_S = 20.0
IMAGE_MB = (
    (r"/proxyv2(:|@|$)", 100),            # istio/proxyv2: Envoy + pilot-agent (sidecars, gateways)
    (r"/pilot(:|@|$)", 75),               # istio/pilot: istiod
    (r"/examples-bookinfo-reviews-", 290),  # Java on Open Liberty
    (r"/examples-bookinfo-details-", 90),   # Ruby
    (r"/examples-bookinfo-ratings-", 70),   # Node.js
    (r"/examples-bookinfo-productpage-", 60),  # Python
    (r"/cert-manager-controller(:|@|$)", 20),
    (r"/cert-manager-webhook(:|@|$)", 15),
    (r"/cert-manager-cainjector(:|@|$)", 15),
    (r"/cert-manager-(acmesolver|startupapicheck)(:|@|$)", 10),
    (r"/prometheus(:|@|$)", 110),
    (r"/configmap-reload(:|@|$)", 5),
    (r"/grafana(:|@|$)", 130),
    (r"/kiali(:|@|$)", 80),
    (r"/(all-in-one|jaeger)(:|@|$)", 30),
)
DEFAULT_IMAGE_MB = 50
# From the pulled images to Ready: the runtime creates and starts the
# containers and the first readiness probe passes.
START_S = 2.0
# A LoadBalancer Service's address, from the Service's creation.
LB_S = 40.0
# Every delay is its base times a factor in [1 - JITTER, 1 + JITTER].
JITTER = 0.3


@dataclass(frozen=True)
class Profile:
    name: str = "instant"
    seed: int = 1

    @property
    def realistic(self) -> bool:
        return self.name == "realistic"

    def factor(self, key: str) -> float:
        """The jitter factor for KEY: the same for the same seed and key."""
        digest = hashlib.sha256(f"{self.seed}|{key}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2 ** 64
        return 1 + JITTER * (2 * unit - 1)

    def pod_delay(self, namespace: str, workload: str, images: list[str]) -> tuple[float, str]:
        """Seconds from a pod's scheduling to Ready, and why: each distinct
        image pulled in turn (the kubelet pulls one image at a time by
        default), then the containers started."""
        if not self.realistic:
            return 0.0, "instant profile"
        total, parts = 0.0, []
        for image in dict.fromkeys(images):
            pull = pull_seconds(image) * self.factor(f"pull|{namespace}/{workload}|{image}")
            total += pull
            parts.append(f"pull {image} {pull:.1f} s")
        start = START_S * self.factor(f"start|{namespace}/{workload}")
        parts.append(f"start {start:.1f} s")
        return round(total + start, 3), ", ".join(parts)

    def lb_delay(self, namespace: str, name: str) -> float:
        """Seconds until a LoadBalancer Service gets its address."""
        if not self.realistic:
            return 0.0
        return round(LB_S * self.factor(f"lb|{namespace}/{name}"), 3)


def pull_seconds(image: str) -> float:
    size = next((mb for pattern, mb in IMAGE_MB if re.search(pattern, image)), DEFAULT_IMAGE_MB)
    return PULL_OVERHEAD_S + size / PULL_MB_S


def load(state: str | os.PathLike | None) -> Profile:
    """The profile recorded for the cluster whose state directory is STATE
    (instant when none was recorded)."""
    if not state:
        return Profile()
    path = Path(state) / PROFILE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Profile()
    if data.get("profile") not in PROFILES:
        raise SystemExit(f"{path}: unknown profile {data.get('profile')!r} (one of {', '.join(PROFILES)})")
    return Profile(data["profile"], int(data.get("seed", 1)))


def pod_workload(pod) -> str:
    """The name of what made POD, without the random parts: a ReplicaSet's
    Deployment, a StatefulSet's or Job's pod base name, or the pod's own name."""
    meta = pod.metadata
    owners = meta.owner_references or []
    if owners:
        name = owners[0].name
        template_hash = (meta.labels or {}).get("pod-template-hash")
        if owners[0].kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
        return name
    return meta.name


def pod_images(spec) -> list[str]:
    return [c.image for c in [*(spec.init_containers or []), *(spec.containers or [])] if c.image]


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def annotate(kubeconfig: str, state: str) -> int:
    """Give each scheduled pod that has none its ready delay (realistic profile)."""
    from kubernetes import client, config, watch  # pylint: disable=import-outside-toplevel

    profile = load(state)
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    log(f"pod annotator: profile {profile.name}, seed {profile.seed}")

    def handle(pod) -> None:
        meta = pod.metadata
        if (not pod.spec.node_name or meta.deletion_timestamp is not None
                or DELAY_ANNOTATION in (meta.annotations or {})
                or (pod.status and pod.status.phase not in (None, "Pending"))):
            return
        workload = pod_workload(pod)
        delay, why = profile.pod_delay(meta.namespace, workload, pod_images(pod.spec))
        ready_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delay)
        core.patch_namespaced_pod(meta.name, meta.namespace, {"metadata": {"annotations": {
            DELAY_ANNOTATION: f"{delay:.3f}",
            WHY_ANNOTATION: why,
            READY_AT_ANNOTATION: ready_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }}})
        log(f"{meta.namespace}/{meta.name} ({workload}): Ready in {delay:.1f} s ({why})")

    while True:
        try:
            pods = core.list_pod_for_all_namespaces()
            for pod in pods.items:
                handle(pod)
            for event in watch.Watch().stream(core.list_pod_for_all_namespaces,
                                              resource_version=pods.metadata.resource_version,
                                              timeout_seconds=300):
                if event["type"] in ("ADDED", "MODIFIED"):
                    handle(event["object"])
        except Exception as exc:  # noqa: BLE001  keep serving through API restarts
            log(f"watch interrupted: {exc}; retrying in 2 s")
            time.sleep(2)


def kwok_stage(src: str, out: str) -> None:
    """The realistic pod-running stage: the same stage, applied only to pods
    the annotator has given a ready time, and only at that time."""
    import yaml  # pylint: disable=import-outside-toplevel

    text = Path(src).read_text()
    stage = yaml.safe_load(text)
    key = f'.metadata.annotations["{READY_AT_ANNOTATION}"]'
    stage["spec"]["selector"]["matchExpressions"].append({"key": key, "operator": "Exists"})
    stage["spec"]["delay"] = {"durationFrom": {"jq": {"expression": key}}}

    class Dumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
        pass

    def block(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, block)
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    Path(out).write_text(
        header + f"# Realistic profile: generated by hack/testcluster/latency.py from {Path(src).name}.\n---\n"
        + yaml.dump(stage, Dumper=Dumper, sort_keys=False))


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "annotate":
        return annotate(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "kwok-stage":
        kwok_stage(argv[1], argv[2])
        return 0
    if len(argv) == 2 and argv[0] == "show":
        profile = load(argv[1])
        print(f"{profile.name} (seed {profile.seed})" if profile.realistic else profile.name)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
