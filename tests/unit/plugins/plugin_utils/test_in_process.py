# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When an action plugin may run its module's logic in the controller's
process (and so print progress while it waits): the controller itself, by
Ansible's local connection or Mitogen's (hack/mitogen-env.sh), and nowhere else."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import InProcessAction


def allowed(transport, become=False, async_val=0, environment=None, interpreter=None):
    action = InProcessAction.__new__(InProcessAction)
    action._connection = SimpleNamespace(transport=transport)  # pylint: disable=protected-access
    action._task = SimpleNamespace(async_val=async_val, environment=environment or [])  # pylint: disable=protected-access
    action._play_context = SimpleNamespace(become=become)  # pylint: disable=protected-access
    action._templar = SimpleNamespace(template=lambda value: value)  # pylint: disable=protected-access
    task_vars = {"ansible_python_interpreter": interpreter} if interpreter else {}
    return action._in_process_allowed(task_vars)  # pylint: disable=protected-access


@pytest.mark.parametrize("transport", ["local", "mitogen_local"])
def test_the_controller_itself_runs_in_process(monkeypatch, transport):
    monkeypatch.delenv("SERVICEMESH_ISTIO_IN_PROCESS", raising=False)
    assert allowed(transport)
    assert allowed(transport, interpreter=sys.executable)


@pytest.mark.parametrize("case", [
    {"transport": "ssh"}, {"transport": "mitogen_ssh"}, {"transport": "kubernetes.core.kubectl"},
    {"transport": "local", "become": True}, {"transport": "mitogen_local", "async_val": 30},
    {"transport": "local", "environment": [{"HTTPS_PROXY": "http://127.0.0.1:3128"}]},
    {"transport": "local", "interpreter": "/nonexistent/python3"},
])
def test_anything_else_runs_the_module(monkeypatch, case):
    monkeypatch.delenv("SERVICEMESH_ISTIO_IN_PROCESS", raising=False)
    assert not allowed(**case)


def test_the_environment_forces_the_module_way(monkeypatch):
    monkeypatch.setenv("SERVICEMESH_ISTIO_IN_PROCESS", "0")
    assert not allowed("local") and not allowed("mitogen_local")
