"""Issue 15: execution-environment.yml (ansible-builder v3) writes a build
context offline: `ansible-builder create` validates the file against its
schema and lays out the Containerfile and everything it copies. No image is
built here (no container engine); the test checks what the build would use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = REPO_ROOT / ".venv/bin"
EE_FILES = ("execution-environment.yml", "requirements.yml", "requirements.txt", "bindep.txt")


def _builder_create(workdir: Path, ee_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "ansible-builder", "create", "-f", ee_file, "-c", workdir / "context", "--output-filename", "Containerfile", "-v", "2"],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the EE file and its dependency files, with the collection
    built beside them as the EE file expects."""
    work = tmp_path_factory.mktemp("ee")
    for name in EE_FILES:
        shutil.copy(REPO_ROOT / name, work / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(work / "tmp"))
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", work, REPO_ROOT],
                   check=True, capture_output=True, cwd=work, env=env, timeout=300)
    return work


@pytest.fixture(scope="module")
def context(workdir):
    created = _builder_create(workdir, workdir / "execution-environment.yml")
    assert created.returncode == 0, created.stdout + created.stderr
    return workdir / "context"


def test_ee_file_uses_the_collection_requirement_files():
    ee = yaml.safe_load((REPO_ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert (deps["galaxy"], deps["python"], deps["system"]) == ("requirements.yml", "requirements.txt", "bindep.txt")
    # The same ansible-core and ansible-runner as the development tool chain.
    pins = dict(line.split("==") for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    assert deps["ansible_runner"]["package_pip"] == f"ansible-runner=={pins['ansible-runner']}"


def test_create_writes_the_build_context(context):
    build = context / "_build"
    for name in ("requirements.yml", "requirements.txt", "bindep.txt"):
        assert (build / name).read_text() == (REPO_ROOT / name).read_text(), name
    version = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())["version"]
    assert (build / "collection" / f"servicemesh-istio-{version}.tar.gz").is_file()
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    # The collections from requirements.yml, then this collection, in the galaxy stage.
    galaxy = containerfile.split("FROM base AS galaxy", 1)[1].split("FROM base AS builder", 1)[0]
    assert "-r requirements.yml" in galaxy
    assert "/build/collection/servicemesh-istio-*.tar.gz" in galaxy
    assert galaxy.index("-r requirements.yml") < galaxy.index("/build/collection/")
    # Python and system packages: introspected from the files (and from the
    # installed collections' meta/execution-environment.yml).
    assert "introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    # Helm, checked against its published digest, in the final image.
    final = containerfile.split("FROM base AS final", 1)[1]
    assert "ARG HELM_VERSION=3.19.5" in final
    assert "sha256sum -c -" in final and "install -m 0755 /tmp/linux-${HELM_ARCH}/helm /usr/local/bin/helm" in final


def test_helm_version_matches_the_test_cluster():
    versions = dict(line.split("=", 1) for line in (REPO_ROOT / "hack/testcluster/versions.env").read_text().splitlines()
                    if "=" in line and not line.lstrip().startswith("#"))
    helm = versions["HELM_VERSION"].strip('"').lstrip("v")
    assert f"HELM_VERSION={helm}" in (REPO_ROOT / "execution-environment.yml").read_text()


def test_create_refuses_a_file_outside_the_schema(workdir):
    """The schema check is real: a misspelt key is refused, nothing is written."""
    ee = yaml.safe_load((workdir / "execution-environment.yml").read_text())
    ee["dependencies"]["pyhton"] = ee["dependencies"].pop("python")
    bad = workdir / "bad-ee.yml"
    bad.write_text(yaml.safe_dump(ee))
    shutil.rmtree(workdir / "context", ignore_errors=True)
    refused = _builder_create(workdir, bad)
    assert refused.returncode != 0
    assert "pyhton" in refused.stdout + refused.stderr
    assert not (workdir / "context" / "Containerfile").exists()
