# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.run_lock: in process on the controller, else the module."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _run_lock
from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import InProcessAction

# Imported once, when the controller loads this plugin; the workers it forks inherit it
# (the client imports its typed API classes lazily, about 0.1 s each).
_IMPORT_ERROR = _k8s.import_kubernetes()
if _IMPORT_ERROR is None:
    _LEASES = _k8s.kubernetes.client.CoordinationV1Api


class ActionModule(InProcessAction):
    """Take or give back the run lock in the worker process when the task runs on the controller."""

    ARGUMENT_SPEC = dict(_run_lock.RUN_LOCK_SPEC, **_k8s.AUTH_ARG_SPEC)
    IMPORT_ERROR = _IMPORT_ERROR
    _supports_async = False

    def in_process(self, params, progress):
        del progress

        def make_store():
            return _run_lock.LeaseStore(_k8s.build_api_client(params), _k8s.kubernetes, _k8s.ApiException)

        return _run_lock.run_lock(params, bool(self._play_context.check_mode), make_store, _k8s.ApiException,
                                  _k8s.api_error_text, _k8s.transport_error_text, _k8s.KubeConfigError)
