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


def _install_collection_finder() -> None:
    """Import every collection through Ansible's collection finder, from the
    start of the test process, as ``ansible-test units`` does. Some tests need
    the finder (the AWX render loads awx.awx's plugins); once it is installed,
    a collection package imported earlier without it has no metadata and its
    not-yet-imported modules fail to load, so which tests pass would depend on
    their order."""
    try:
        from ansible.plugins.loader import init_plugin_loader
        from ansible.utils.collection_loader import AnsibleCollectionConfig
    except ImportError:  # the tests that need Ansible say so themselves
        return
    if not AnsibleCollectionConfig.collection_finder:
        init_plugin_loader([str(_COLLECTIONS)] if _COLLECTIONS.is_dir() else [])


_install_collection_finder()


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
