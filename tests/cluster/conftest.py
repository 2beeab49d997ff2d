"""Fixtures for tests against the local test cluster.

These tests run inside the cluster's network namespace
(``hack/testcluster/cluster.sh exec -- .venv/bin/pytest ...``), so the only
reachable addresses are loopback ones.
"""

from __future__ import annotations

import base64
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
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    finally:
        if vars_file:
            os.unlink(vars_file.name)
    times = os.environ.get("SMI_PLAYBOOK_TIMES")
    if times:
        # Where the suite's time goes (hack/playbook_times.py sums it up): one
        # line per run, appended (the parts share the file; a line is one write).
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        options = " ".join(a for a in args if a.startswith("-") or "," in a or a.isalpha())
        with open(times, "a", encoding="utf-8") as out:
            out.write(f"{test}\t{Path(str(playbook)).name}\t{options}\t{time.monotonic() - started:.1f}\t{proc.returncode}\n")
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


def reset_cluster() -> None:
    """Empty the test cluster in place (``hack/testcluster/cluster.sh reset``:
    fresh etcd, the same PKI, ACME lab and chart mirror; about 15 s) so that
    the next module starts from a fresh cluster. For the cleanup of a module
    whose subject is not the teardown: a teardown.yml run costs two to three
    minutes on the loaded CI machine, and teardown.yml is tested where it is
    the subject (docs/testing.md, "Fresh clusters")."""
    proc = subprocess.run(["bash", str(REPO_ROOT / "hack/testcluster/cluster.sh"), "reset"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"the cluster reset failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def api_server_outage(down: float) -> dict:
    """A real outage of the test cluster's API server: kube-apiserver killed
    (SIGKILL, as a crash would), kept down ``down`` seconds, then started again
    with the same command line and environment, keeping etcd and every other
    component as they were (``cluster.sh restart`` would end every process in
    the namespace, the calling test too). Returns when /readyz answers again,
    with the times (monotonic) it went down and came back."""
    pid_file = STATE / "run" / "kube-apiserver.pid"
    pid = int(pid_file.read_text())
    proc_dir = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc_dir / "cmdline").read_bytes().split(b"\0") if a]
    env = dict(item.decode().split("=", 1) for item in (proc_dir / "environ").read_bytes().split(b"\0") if b"=" in item)
    cwd = os.readlink(proc_dir / "cwd")
    os.kill(pid, 9)
    went_down = time.monotonic()
    while proc_dir.exists() and "zombie" not in _proc_state(proc_dir):
        time.sleep(0.02)
    time.sleep(max(0.0, down - (time.monotonic() - went_down)))
    with open(STATE / "logs" / "kube-apiserver.log", "ab") as log:
        server = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  start_new_session=True)
    pid_file.write_text(str(server.pid))
    started = time.monotonic()
    eventually("kube-apiserver /readyz after the outage",
               lambda: kubectl("get", "--raw", "/readyz").returncode == 0, timeout=120, step=0.25)
    return {"down_at": went_down, "restarted_at": started, "ready_at": time.monotonic()}


def _proc_state(proc_dir: Path) -> str:
    try:
        return (proc_dir / "status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False, timeout=120)


def helm_releases_any_status() -> list[dict]:
    """Every Helm release in every namespace, whatever its status (``pending-*``
    and ``failed`` included), as ``helm list -o json`` gives them."""
    out = subprocess.run(["helm", "list", "-A", "-a", "-o", "json"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return json.loads(out)


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


# Secret keys whose values are public (certificates: tls.crt, ca.crt, istiod's
# root-cert.pem and cert-chain.pem), and Secret types whose
# content never passes through a task (Helm's releases).
_PUBLIC_SECRET_KEY_ENDINGS = (".crt", "cert.pem", "chain.pem")
_UNSCANNED_SECRET_TYPES = ("helm.sh/release.v1",)
_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def assert_no_key_material(output: str, api_client, extra: tuple = ()) -> None:
    """No private key in PEM form, and no value of any Secret in the cluster
    (private keys, the ACME account key, the CA's key, tokens, generated
    passwords, the TSIG key; decoded or base64) appears in ``output``; nor do
    the ``extra`` secrets (given to a run but not stored in the cluster)."""
    from kubernetes import client

    assert '"invocation"' in output or "invocation" in output, "not a -vvv output: module arguments are not printed"
    assert not _PEM_PRIVATE_KEY.search(output), "a PEM private key appears in the output"
    found = []
    for secret in client.CoreV1Api(api_client).list_secret_for_all_namespaces().items:
        if secret.type in _UNSCANNED_SECRET_TYPES:
            continue
        for key, encoded in (secret.data or {}).items():
            if key.endswith(_PUBLIC_SECRET_KEY_ENDINGS) or not encoded:
                continue
            decoded = base64.b64decode(encoded).decode("utf-8", "replace")
            for form in (encoded, decoded.strip()):
                if len(form) >= 8 and form in output:
                    found.append(f"{secret.metadata.namespace}/{secret.metadata.name}[{key}]")
    for value in extra:
        for form in (value, base64.b64encode(value.encode()).decode()):
            if form in output:
                found.append("a secret given to the run")
    assert not found, f"secret values in the output: {sorted(set(found))}"


# kubernetes.core.k8s's "method" for an object it created, or applied (the
# roles apply only their own manifests); "update" is a merge into an object
# that existed, maybe someone else's (the application namespace's labels).
_WRITE_METHODS = ("create", "apply")


def failed_items(result: dict) -> list:
    """The messages of a loop's failed items (the role input checks are loops)."""
    return [item.get("msg") for item in result.get("results", []) if item.get("failed")]


def run_per_host(playbook, cases: list[dict], workdir: Path, *args: str, base: dict | None = None,
                 forks: int = 10) -> dict:
    """``playbook`` once for all ``cases`` (each a dict of variables): one
    inventory host a case, with ``base`` and then its variables as host
    variables beside the local inventory's group variables (not as extra
    variables, which would override a case's), each host its own run of the
    play (what ansible-playbook does for any host list), so that many refusals
    cost one ansible-playbook start rather than one each. ``args``: more
    options (``--tags``). Returns {"hosts": {case index: what that host's run
    did}, "changes": the cluster objects created, changed or deleted meanwhile
    (by anyone but the cluster's own controllers), "rc", "explain"}."""
    hosts = {f"case-{index:02d}": {**(base or {}), **extra, "ansible_connection": "local",
                                   "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
             for index, extra in enumerate(cases)}
    inventory = workdir / "matrix.yml"
    inventory.write_text(json.dumps({"all": {"children": {"servicemesh_controller": {"hosts": hosts}}}}))
    before = cluster_snapshot()
    run = run_playbook(playbook, "-i", str(inventory), "--limit", "case-*", "--forks", str(forks), *args)
    changes = changes_by_others(before)
    out = {}
    for index in range(len(cases)):
        host = f"case-{index:02d}"
        results = [(name, result) for name, task_host, result in run.task_results() if task_host == host]
        out[index] = {
            "stats": run.stats.get(host, {}),
            "failures": [f"{name}: {message}" for name, result in results if result.get("failed")
                         for message in [result.get("msg", result)] + failed_items(result)],
            "failed_tasks": [name for name, result in results if result.get("failed")],
            "changed": [name for name, result in results if result.get("changed")],
            "tasks": [name for name, _result in results],
        }
    return {"hosts": out, "changes": changes, "rc": run.rc, "explain": run.explain}


def written_objects(run) -> list[dict]:
    """Every object a kubernetes.core.k8s task of the run created or applied,
    as the API server returned it (single definitions and lists alike)."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            obj = node.get("result")
            method = node.get("method")
            if isinstance(method, str) and method in _WRITE_METHODS and isinstance(obj, dict) and "metadata" in obj:
                out.append(obj)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _name, _host, result in run.task_results():
        walk(result)
    return out


def unowned_objects(run) -> list[str]:
    """The objects the run wrote without the collection's ownership label
    (app.kubernetes.io/managed-by: servicemesh.istio, or .<role>)."""
    out = []
    for obj in written_objects(run):
        meta = obj["metadata"]
        owner = (meta.get("labels") or {}).get("app.kubernetes.io/managed-by", "")
        if owner != "servicemesh.istio" and not owner.startswith("servicemesh.istio."):
            out.append(f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')} (managed-by: {owner or 'none'})")
    return sorted(set(out))


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


def changes_by_others(before: dict[str, str]) -> list[str]:
    """What changed since ``before`` (a cluster_snapshot()), leaving out the
    ConfigMaps that controllers keep current by themselves on a converged
    cluster while nothing is applied (leader election, istiod's IP
    auto-allocation)."""
    return [c for c in snapshot_diff(before, cluster_snapshot())
            if not (c.startswith("changed ConfigMap ") and any(w in c for w in ("leader", "election", "autoallocate")))]
