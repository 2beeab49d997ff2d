"""Shared pytest fixtures.

Unit tests import the collection as ``ansible_collections.servicemesh.istio``
through the ``.collections`` link that ``hack/setup.sh`` creates.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_COLLECTIONS = REPO_ROOT / ".collections"
if _COLLECTIONS.is_dir() and str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of the local test cluster's admin kubeconfig.

    Set by ``hack/testcluster/cluster.sh exec`` (SMI_KUBECONFIG); a test that
    needs it fails (not skips) when the cluster is not there.
    """
    path = os.environ.get("SMI_KUBECONFIG")
    if not path or not Path(path).is_file():
        pytest.fail(
            "the local test cluster is not running or this test is not run inside its "
            "network namespace: start it with `hack/testcluster/cluster.sh start` and run "
            "`hack/testcluster/cluster.sh exec -- .venv/bin/pytest -m cluster`"
        )
    return path
