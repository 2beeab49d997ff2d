# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.preflight_info: in process on the controller, else the module."""

from __future__ import annotations

import subprocess

from ansible.module_utils.urls import open_url

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _ready
from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import InProcessAction

# Imported once, when the controller loads this plugin; the workers it forks inherit it.
_IMPORT_ERROR = _k8s.import_kubernetes()


def _run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def _fetch(url, timeout):
    return open_url(url, timeout=timeout).read()


class ActionModule(InProcessAction):
    """Run preflight_info's logic in the worker process when the task runs on the controller."""

    ARGUMENT_SPEC = dict(_ready.PREFLIGHT_INFO_SPEC, **_k8s.AUTH_ARG_SPEC)
    IMPORT_ERROR = _IMPORT_ERROR

    def in_process(self, params, progress):
        del progress
        return _ready.run_preflight_info(params, _run_command, _fetch)
