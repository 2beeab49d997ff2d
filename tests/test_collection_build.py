"""Issue 2: `ansible-galaxy collection build` makes a tarball that installs
and is usable by FQCN, from a directory that knows nothing of this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = REPO_ROOT / ".venv/bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("build")
    version = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())["version"]
    dest = work / "collections"
    # Only the installed copy (and the collections bundled with ansible) are
    # visible: no ANSIBLE_* variable of the caller (its collections path holds
    # the development link, which would make the install a no-op).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(work / "tmp"))
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", work, REPO_ROOT],
                   check=True, capture_output=True, cwd=work, env=env)
    tarball = work / f"servicemesh-istio-{version}.tar.gz"
    assert tarball.is_file()
    subprocess.run([BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", dest, tarball],
                   check=True, capture_output=True, cwd=work, env=env)
    return {"tarball": tarball, "dest": dest, "env": env, "cwd": work, "version": version}


def test_tarball_holds_the_collection_and_nothing_of_the_dev_setup(installed):
    with tarfile.open(installed["tarball"]) as tar:
        names = tar.getnames()
    manifest = json.loads((installed["dest"] / "ansible_collections/servicemesh/istio/MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "servicemesh"
    assert manifest["collection_info"]["name"] == "istio"
    assert manifest["collection_info"]["version"] == installed["version"]
    assert "roles/preflight/meta/argument_specs.yml" in names
    assert "meta/runtime.yml" in names and "playbooks/site.yml" in names
    assert not [n for n in names if n.startswith((".venv", ".collections", "hack/", ".git", ".ci"))]


def test_installed_collection_is_listed_from_its_install_path(installed):
    out = subprocess.run([BIN / "ansible-galaxy", "collection", "list", "servicemesh.istio", "--format", "json"],
                         env=installed["env"], cwd=installed["cwd"], capture_output=True, text=True, check=True).stdout
    listing = json.loads(out)
    paths = [p for p, cols in listing.items() if "servicemesh.istio" in cols]
    assert paths == [str(installed["dest"] / "ansible_collections")]


def test_role_runs_by_fqcn_and_refuses_bad_input_before_any_change(installed):
    playbook = installed["cwd"] / "use.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n"
        "    - role: servicemesh.istio.preflight\n      vars:\n        preflight_min_ready_nodes: many\n"
    )
    proc = subprocess.run([BIN / "ansible-playbook", "-i", "localhost,", "-c", "local", playbook],
                          env=installed["env"], cwd=installed["cwd"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Validating arguments against arg spec 'main'" in proc.stdout
    assert "argument 'preflight_min_ready_nodes' is of type str" in proc.stdout
    # Nothing ran past the validation: the role's first real task never started.
    assert "Read the API server version" not in proc.stdout


def test_role_documentation_comes_from_the_argument_spec(installed):
    out = subprocess.run([BIN / "ansible-doc", "-t", "role", "servicemesh.istio.preflight"],
                         env=installed["env"], cwd=installed["cwd"], capture_output=True, text=True, check=True).stdout
    assert "preflight_min_ready_nodes" in out and "preflight_kubernetes_min_version" in out
