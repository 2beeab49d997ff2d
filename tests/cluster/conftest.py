"""Fixtures for tests against the local test cluster.

These tests run inside the cluster's network namespace
(``hack/testcluster/cluster.sh exec -- .venv/bin/pytest ...``), so the only
reachable addresses are loopback ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio"))
MIRROR = CACHE / "mirror"
# The running cluster's state directory, and what its start wrote there.
STATE = Path(os.environ.get("SMI_STATE", "/var/lib/servicemesh-istio/cluster"))
# hack/testcluster/site-vars.yml: `make site`'s extra variables (ACME from
# Pebble, DNS-01 through knotd, the stand-ins' limits); SITE_ACME is what
# acme_lab.py made at the cluster's start (directory, CA roots, TSIG key).
SITE_VARS = REPO_ROOT / "hack/testcluster/site-vars.yml"
SITE_ACME = STATE / "acme/site-vars.json"
# The gateway stand-in's record of every request and handshake with its reason.
GATEWAY_RECORD = STATE / "gateway-standin/istio-system.istio-ingressgateway.jsonl"


def gateway_events(since: float) -> list[dict]:
    """What the gateway stand-in decided since ``since`` (time.time())."""
    if not GATEWAY_RECORD.is_file():
        return []
    return [e for e in map(json.loads, GATEWAY_RECORD.read_text().splitlines()) if e["t"] >= since]


def _versions() -> dict[str, str]:
    out = {}
    for line in (REPO_ROOT / "hack/testcluster/versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value.strip('"')
    return out


VERSIONS = _versions()
ISTIO_VERSION = VERSIONS["ISTIO_DEFAULT_SNAPSHOT"]
CERT_MANAGER_VERSION = VERSIONS["CERT_MANAGER_VERSION"]
CHART_REPO = os.environ.get("SMI_CHART_REPO", "http://127.0.0.1:8879/charts")


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.cluster)


@dataclass
class PlaybookRun:
    """The outcome of one ansible-playbook run (json callback)."""

    rc: int
    stats: dict
    plays: list
    stderr: str
    raw: str = field(repr=False, default="")

    def total(self, key: str) -> int:
        return sum(host.get(key, 0) for host in self.stats.values())

    @property
    def changed(self) -> int:
        return self.total("changed")

    @property
    def failed(self) -> int:
        return self.total("failures") + self.total("unreachable")

    def task_results(self):
        """(task name, host, result) for every task result, in order."""
        for play in self.plays:
            for task in play.get("tasks", []):
                for host, result in task.get("hosts", {}).items():
                    yield task["task"]["name"], host, result

    def failures(self) -> list[str]:
        """Messages of failed tasks, and of each failed item of a failed loop."""
        out = []
        for name, _host, result in self.task_results():
            if not result.get("failed"):
                continue
            out.append(f"{name}: {result.get('msg', result)}")
            out += [f"{name}: {item.get('msg')}" for item in result.get("results", []) if item.get("failed")]
        return out

    def changed_tasks(self) -> list[str]:
        return [name for name, _host, result in self.task_results() if result.get("changed")]

    def explain(self) -> str:
        return (
            f"rc={self.rc} stats={json.dumps(self.stats)}\nfailures: {self.failures()}\n"
            f"changed: {self.changed_tasks()}\nstderr: {self.stderr[-3000:]}"
        )


def run_playbook(playbook, *args: str, extra_vars: dict | None = None, inventory: str | None = None,
                 report: Path | None = None) -> PlaybookRun:
    """Run a playbook with the json callback and return what happened; with
    ``report``, the site_report callback writes the run's JSON report there
    (else none is written: the halves of the suite share the checkout)."""
    env = dict(os.environ)
    env.update(
        SERVICEMESH_ISTIO_REPORT_PATH=str(report) if report else "",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"),
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )
    cmd = [str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", inventory or str(REPO_ROOT / "inventories/local")]
    vars_file = None
    if extra_vars:
        vars_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(extra_vars, vars_file)
        vars_file.close()
        cmd += ["-e", f"@{vars_file.name}"]
    cmd += [*args, str(playbook)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    finally:
        if vars_file:
            os.unlink(vars_file.name)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = {"stats": {}, "plays": []}
    dump = os.environ.get("SMI_PLAYBOOK_DUMP")
    if dump:
        # Profiling aid: each run's JSON result (task start/end times) kept in this directory.
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / f"{time.strftime('%H%M%S')}-{Path(str(playbook)).stem}-{os.getpid()}.json").write_text(proc.stdout)
    return PlaybookRun(proc.returncode, doc.get("stats", {}), doc.get("plays", []), proc.stderr, proc.stdout)


def eventually(what: str, predicate, timeout: float = 60, step: float = 1.0, retry_on: tuple = ()):
    """Poll ``predicate`` until it returns something true and return that; an
    exception of a type in ``retry_on`` counts as "not yet" (and is quoted if
    time runs out), any other one fails the test at once."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except retry_on as exc:  # pylint: disable=catching-non-exception
            last = exc
        if last and not isinstance(last, BaseException):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(step)


def until_answering(what: str, predicate, timeout: float = 60, step: float = 1.0):
    """``eventually`` for a service that may not listen yet: an exception is "not yet"."""
    return eventually(what, predicate, timeout, step, retry_on=(Exception,))


@pytest.fixture(scope="session")
def k8s(kubeconfig):
    """A kubernetes ApiClient for the test cluster."""
    from kubernetes import client, config

    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture
def namespace(k8s):
    """A fresh namespace, deleted after the test."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    delete_namespace_and_wait(api_client=k8s, name=name)


def delete_namespace_and_wait(api_client, name: str, timeout: float = 180) -> None:
    """Delete a namespace and wait until it is gone, so that no Terminating
    namespace leaks into the next test's view of the cluster."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        assert time.monotonic() < deadline, f"namespace {name} still exists after {timeout} s"
        time.sleep(0.5)


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False, timeout=120)


CERT_MANAGER_CRDS = ("certificates.cert-manager.io", "clusterissuers.cert-manager.io",
                     "certificaterequests.cert-manager.io", "orders.acme.cert-manager.io",
                     "challenges.acme.cert-manager.io", "issuers.cert-manager.io")


@pytest.fixture(scope="module")
def cert_manager_crds(kubeconfig):
    """Install cert-manager's CRDs, rendered from its pinned chart in the mirror,
    for one test module; the ones it created are deleted after it (left behind,
    they have no Helm ownership and a later cert-manager install refuses them)."""
    existing = {name for name in CERT_MANAGER_CRDS if kubectl("get", f"crd/{name}").returncode == 0}
    chart = MIRROR / "charts" / f"cert-manager-{CERT_MANAGER_VERSION}.tgz"
    assert chart.is_file(), f"{chart} is missing: run hack/testcluster/mirror.sh"
    rendered = subprocess.run(
        ["helm", "template", "cert-manager", str(chart), "--set", "crds.enabled=true",
         "--kube-version", VERSIONS["KUBERNETES_VERSION"],
         *[arg for name in ("certificates", "certificaterequests", "issuers", "clusterissuers")
           for arg in ("--show-only", f"templates/crd-cert-manager.io_{name}.yaml")],
         "--show-only", "templates/crd-acme.cert-manager.io_orders.yaml",
         "--show-only", "templates/crd-acme.cert-manager.io_challenges.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout
    applied = kubectl("apply", "--server-side", "--field-manager=smistio-tests", "-f", "-", stdin=rendered)
    assert applied.returncode == 0, applied.stderr
    waited = kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in CERT_MANAGER_CRDS])
    assert waited.returncode == 0, waited.stderr
    yield
    created = [f"crd/{name}" for name in CERT_MANAGER_CRDS if name not in existing]
    if created:
        deleted = kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=120s", *created)
        assert deleted.returncode == 0, deleted.stderr


# --- running the collection's modules in a small play -----------------------

VOLATILE = ("elapsed", "attempts", "invocation", "_ansible_no_log", "warnings", "deprecations", "exception")


def module_play(tmp_path, tasks, name="play.yml"):
    """A playbook of `tasks` against the local inventory, with the site's module_defaults."""
    path = tmp_path / name
    path.write_text(json.dumps([{
        "name": "Module tasks",
        "hosts": "servicemesh_controller",
        "gather_facts": False,
        "module_defaults": {"group/servicemesh.istio.kubernetes": {
            "kubeconfig": "{{ servicemesh_istio_kubeconfig }}", "context": "{{ servicemesh_istio_context }}"}},
        "tasks": tasks,
    }]))
    return path


def results_of(run, prefix):
    """Results of the tasks whose name starts with `prefix`."""
    return [r for name, _h, r in run.task_results() if name.startswith(prefix)]


def stable(result):
    """A result without what differs from one run to the next (timings) or between the two ways (bookkeeping)."""
    out = {k: v for k, v in result.items() if k not in VOLATILE}
    out["msg"] = " ".join(str(out.get("msg", "")).split()).rsplit(" after ", maxsplit=1)[-1] if out.get("failed") else out.get("msg")
    return out


def both_ways(monkeypatch, playbook, *args):
    """Run a playbook with the modules in the controller's process, then as modules."""
    monkeypatch.setenv("SERVICEMESH_ISTIO_IN_PROCESS", "1")
    fast = run_playbook(playbook, *args)
    monkeypatch.setenv("SERVICEMESH_ISTIO_IN_PROCESS", "0")
    module = run_playbook(playbook, *args)
    return fast, module


# --- Istio's own analyzer ---------------------------------------------------

# istioctl's name for an object: "<Kind> <namespace>/<name>", or "<Kind> <name>"
# when it is cluster-scoped.
_ORIGIN = re.compile(r"^(?P<kind>\S+) (?:(?P<namespace>[^/\s]+)/)?(?P<name>\S+)$")


def istioctl_analyze(*namespaces: str, revision: str = "") -> list[dict]:
    """``istioctl analyze -o json`` against the test cluster, one run per
    namespace (istioctl's own ``-n`` filter) or one ``-A`` run when none is
    given; the messages of all runs, each once. The istioctl of the cluster is
    built from the same istio.io/istio commit as its istiod
    (hack/testcluster/build.sh istioctl) and linked on PATH by cluster.sh."""
    binary = shutil.which("istioctl")
    assert binary, ("istioctl is not on PATH: build it with hack/testcluster/build.sh istioctl and (re)start the "
                    "cluster, which links it into $SMI_STATE/bin")
    scopes = [["-n", ns] for ns in namespaces] or [["-A"]]
    seen, messages = set(), []
    for scope in scopes:
        rev = ["--revision", revision] if revision else []
        proc = subprocess.run([binary, "analyze", *scope, *rev, "-o", "json", "--color=false"],
                              capture_output=True, text=True, check=False, timeout=120)
        assert proc.returncode == 0, f"istioctl analyze {' '.join(scope)} failed ({proc.returncode}): {proc.stderr}"
        # istioctl exits 0 with this line for a namespace that does not exist.
        assert not re.search(r'namespace ".*" not found', proc.stderr), \
            f"istioctl analyze {' '.join(scope)}: {proc.stderr.strip()}"
        for message in json.loads(proc.stdout) or []:
            key = json.dumps(message, sort_keys=True)
            if key not in seen:
                seen.add(key)
                messages.append(message)
    return messages


def assert_istio_analyze_clean(*namespaces: str, accept: dict[str, str] | None = None,
                               revision: str = "") -> list[dict]:
    """Fail on any error or warning ``istioctl analyze`` reports about
    ``namespaces`` (every namespace when none is given) whose code ``accept``
    does not accept with a reason ({"IST0103": "why"}); ``revision``: the
    control plane revision whose injector and mesh config the analysis uses
    (istioctl's default otherwise). Returns all messages
    (info included) for further checks."""
    accept = accept or {}
    for code, reason in accept.items():
        assert re.fullmatch(r"IST[0-9]{4}", code) and isinstance(reason, str) and reason.strip(), \
            f"accept needs analyzer codes, each with a reason: {code!r}: {reason!r}"
    messages = istioctl_analyze(*namespaces, revision=revision)
    issues = []
    for message in messages:
        if message["level"] not in ("Error", "Warning") or message["code"] in accept:
            continue
        issues.append(f"{message['level']} [{message['code']}] ({message.get('origin', '')}) {message['message']}")
    where = ", ".join(namespaces) or "all namespaces"
    if issues:
        pytest.fail(f"istioctl analyze ({where}) reports {len(issues)} issue(s) not accepted:\n  " + "\n  ".join(issues),
                    pytrace=False)
    return messages


def analyzer_origin(message: dict) -> tuple[str, str, str]:
    """(kind, namespace, name) of a message's object; namespace '' when cluster-scoped."""
    found = _ORIGIN.match(message.get("origin", ""))
    assert found, f"not an object name istioctl prints: {message.get('origin')!r}"
    return found.group("kind"), found.group("namespace") or "", found.group("name")


# Kinds that change on their own while nothing is applied (heartbeats, leader
# leases, events, endpoints kept current by controllers).
_VOLATILE = {"events", "events.events.k8s.io", "leases.coordination.k8s.io", "endpoints",
             "endpointslices.discovery.k8s.io", "nodes"}


def cluster_snapshot() -> dict[str, str]:
    """Every object of every listable kind, as "kind namespace/name" ->
    resourceVersion (Helm's release Secrets included, so a Helm revision
    shows too); kinds that change by themselves are left out. Two equal
    snapshots mean nothing was created, changed or deleted in between."""
    listed = kubectl("api-resources", "--verbs=list", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    kinds = [k for k in listed.stdout.split() if k not in _VOLATILE]
    got = kubectl("get", ",".join(kinds), "-A", "-o", "json")
    assert got.returncode == 0, got.stderr
    out = {}
    for item in json.loads(got.stdout)["items"]:
        meta = item["metadata"]
        out[f"{item['kind']} {meta.get('namespace', '')}/{meta['name']}"] = meta.get("resourceVersion", "")
    return out


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What changed between two cluster_snapshot()s, one line per object."""
    return ([f"created {k}" for k in sorted(after.keys() - before.keys())]
            + [f"deleted {k}" for k in sorted(before.keys() - after.keys())]
            + [f"changed {k}" for k in sorted(before.keys() & after.keys()) if before[k] != after[k]])
