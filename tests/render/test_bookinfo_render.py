"""Issue 3: the bookinfo role's own templates against upstream's
samples/bookinfo/platform/kube/bookinfo.yaml of the pinned Istio version
(from the local mirror, packaged from the istio.io/istio module)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SMI_CACHE", "/var/cache/servicemesh-istio"))


def _default_istio_version() -> str:
    for line in (REPO_ROOT / "hack/testcluster/versions.env").read_text().splitlines():
        if line.startswith("ISTIO_DEFAULT_SNAPSHOT="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("ISTIO_DEFAULT_SNAPSHOT missing from versions.env")


UPSTREAM = CACHE / "mirror/istio" / _default_istio_version() / "samples/bookinfo/platform/kube/bookinfo.yaml"


def render(tmp_path, **extra) -> list[dict]:
    dest = tmp_path / "bookinfo.yaml"
    args = ["-e", json.dumps({"render_dest": str(dest), **extra})]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([REPO_ROOT / ".venv/bin/ansible-playbook", "-i", "localhost,", "-c", "local", *args,
                           REPO_ROOT / "tests/render/render_bookinfo.yml"], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [d for d in yaml.safe_load_all(dest.read_text()) if d]


def by_key(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def upstream():
    assert UPSTREAM.is_file(), f"{UPSTREAM} missing: run hack/testcluster/mirror.sh"
    return by_key([d for d in yaml.safe_load_all(UPSTREAM.read_text()) if d])


def test_same_objects_kind_by_kind_and_name_by_name(tmp_path, upstream):
    ours = by_key(render(tmp_path))
    assert sorted(ours) == sorted(upstream)


def test_same_facts_in_every_object(tmp_path, upstream):
    ours = by_key(render(tmp_path))
    for key, theirs in upstream.items():
        mine = ours[key]
        assert mine["metadata"]["namespace"] == "default"
        # Upstream's labels, and the collection's ownership label (which selectors never use).
        labels = dict(mine["metadata"].get("labels") or {})
        assert labels.pop("app.kubernetes.io/managed-by", None) == "servicemesh.istio", key
        assert labels == theirs["metadata"].get("labels"), key
        if key[0] == "Service":
            assert mine["spec"]["selector"] == theirs["spec"]["selector"], key
            assert [(p["name"], p["port"]) for p in mine["spec"]["ports"]] == \
                   [(p["name"], p["port"]) for p in theirs["spec"]["ports"]], key
        if key[0] == "Deployment":
            m, t = mine["spec"], theirs["spec"]
            assert m["replicas"] == t["replicas"] and m["selector"] == t["selector"], key
            assert m["template"]["metadata"]["labels"] == t["template"]["metadata"]["labels"], key
            assert m["template"]["metadata"].get("annotations") == t["template"]["metadata"].get("annotations"), key
            mp, tp = m["template"]["spec"], t["template"]["spec"]
            assert mp["serviceAccountName"] == tp["serviceAccountName"], key
            assert mp.get("volumes") == tp.get("volumes"), key
            (mc,), (tc,) = mp["containers"], tp["containers"]
            for field in ("name", "image", "imagePullPolicy", "ports", "env", "volumeMounts"):
                assert mc.get(field) == tc.get(field), (key, field)


def test_registry_tag_replicas_and_resources_are_settable(tmp_path):
    resources = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    docs = by_key(render(tmp_path, bookinfo_registry="mirror.example.internal/istio", bookinfo_tag="9.9.9",
                         bookinfo_replicas=2, bookinfo_replicas_per_deployment={"reviews-v3": 0},
                         bookinfo_resources=resources, bookinfo_namespace="shop"))
    deployments = [d for k, d in docs.items() if k[0] == "Deployment"]
    assert len(deployments) == 6
    for dep in deployments:
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].startswith("mirror.example.internal/istio/examples-bookinfo-")
        assert container["image"].endswith(":9.9.9")
        assert container["resources"] == resources
        assert dep["metadata"]["namespace"] == "shop"
        assert dep["spec"]["replicas"] == (0 if dep["metadata"]["name"] == "reviews-v3" else 2)
