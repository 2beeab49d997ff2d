"""Give LoadBalancer Services an external IP, as a cloud provider would.

Part of the local test cluster (there is no cloud here). It watches Services
and, for each of type LoadBalancer with no address yet, writes
``status.loadBalancer.ingress``: the requested ``spec.loadBalancerIP`` when set
(the way E2E's reserved IPs are asked for), else the next free address of a
pool in 127.0.100.0/24. Loopback addresses are local inside the cluster's
network namespace, so a test can serve on the address it was given.

A Service annotated ``smistio.test/lb-pending: "true"`` is left without an
address, to test what the roles do when the cloud gives none.

On the realistic latency profile (``$SMI_STATE/profile.json``, latency.py) a
Service gets its address only after the cloud's provisioning time from its
first sighting (``latency.Profile.lb_delay``); on ``instant`` at once.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import time

from kubernetes import client, config, watch

import latency

POOL = [str(ip) for ip in ipaddress.ip_network("127.0.100.0/24").hosts()]
PENDING_ANNOTATION = "smistio.test/lb-pending"
PROFILE = latency.load(os.environ.get("SMI_STATE"))
# Realistic profile: when each Service waiting for its address gets it
# (monotonic time); handle() runs from the watch and from the timers.
DUE: dict[str, float] = {}
LOCK = threading.Lock()


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def assigned_ips(svc) -> list[str]:
    ingress = (svc.status.load_balancer and svc.status.load_balancer.ingress) or []
    return [i.ip for i in ingress if i.ip]


def handle(core, used: dict[str, str], event_type: str, svc) -> None:
    """One Service as seen in a list or a watch event: give a LoadBalancer
    Service without an address one from the pool (or its loadBalancerIP),
    release the address of one that went away or changed type."""
    key = f"{svc.metadata.namespace}/{svc.metadata.name}"
    if event_type == "DELETED":
        DUE.pop(key, None)
        for ip in [ip for ip, owner in used.items() if owner == key]:
            del used[ip]
        return
    annotations = svc.metadata.annotations or {}
    if svc.spec.type != "LoadBalancer":
        if assigned_ips(svc):
            # Type changed away from LoadBalancer: release the address.
            for ip in [ip for ip, owner in used.items() if owner == key]:
                del used[ip]
            core.patch_namespaced_service_status(
                svc.metadata.name, svc.metadata.namespace,
                {"status": {"loadBalancer": {"ingress": None}}},
            )
        return
    if assigned_ips(svc) or annotations.get(PENDING_ANNOTATION) == "true":
        return
    if not provisioned(core, used, svc, key):
        return
    wanted = svc.spec.load_balancer_ip
    if wanted:
        if used.get(wanted, key) != key:
            log(f"{key}: loadBalancerIP {wanted} already used by {used[wanted]}, not assigned")
            return
        ip = wanted
    else:
        free = [ip for ip in POOL if ip not in used]
        if not free:
            log(f"{key}: address pool exhausted")
            return
        ip = free[0]
    used[ip] = key
    core.patch_namespaced_service_status(
        svc.metadata.name, svc.metadata.namespace,
        {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}},
    )
    log(f"{key}: assigned {ip}")


def provisioned(core, used: dict[str, str], svc, key: str) -> bool:
    """Whether the (realistic) provisioning time of SVC has passed; if not,
    a timer hands the Service to handle() again when it has."""
    delay = PROFILE.lb_delay(svc.metadata.namespace, svc.metadata.name)
    if not delay:
        return True
    now = time.monotonic()
    if key not in DUE:
        DUE[key] = now + delay
        log(f"{key}: provisioning the load balancer ({PROFILE.name} profile): address in {delay:.1f} s")
        namespace, name = svc.metadata.namespace, svc.metadata.name

        def again() -> None:
            try:
                current = core.read_namespaced_service(name, namespace)
            except Exception as exc:  # noqa: BLE001  gone, or the API restarting: the watch covers it
                log(f"{key}: not read after its provisioning time ({exc})")
                return
            with LOCK:
                handle(core, used, "MODIFIED", current)

        threading.Timer(delay, again).start()
    return now >= DUE[key]


def main() -> int:
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    used: dict[str, str] = {}  # ip -> namespace/name
    while True:
        try:
            services = core.list_service_for_all_namespaces()
            with LOCK:
                for svc in services.items:
                    for ip in assigned_ips(svc):
                        used[ip] = f"{svc.metadata.namespace}/{svc.metadata.name}"
                # Services that were created before this list (a Service made
                # while the controller started, or between two watches) get no
                # watch event: they are handled from the list itself.
                for svc in services.items:
                    handle(core, used, "ADDED", svc)
            stream = watch.Watch().stream(
                core.list_service_for_all_namespaces,
                resource_version=services.metadata.resource_version,
                timeout_seconds=300,
            )
            for event in stream:
                with LOCK:
                    handle(core, used, event["type"], event["object"])
        except Exception as exc:  # keep serving through API restarts
            log(f"watch interrupted: {exc}; retrying in 2 s")
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
