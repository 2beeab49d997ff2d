# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.service_proxy_request: in process on the controller (with progress
lines while it waits), else the module; either way with the connection options of kubernetes.core's
module_defaults groups as well as its own."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _service_proxy
from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import InProcessAction

# Imported once, when the controller loads this plugin; the workers it forks inherit it.
_IMPORT_ERROR = _k8s.import_kubernetes()


class ActionModule(InProcessAction):
    """Run service_proxy_request's logic in the worker process when the task runs on the controller."""

    ARGUMENT_SPEC = dict(_service_proxy.SERVICE_PROXY_SPEC, **_k8s.AUTH_ARG_SPEC)
    VALIDATOR_KWARGS = _service_proxy.SERVICE_PROXY_CHECKS
    IMPORT_ERROR = _IMPORT_ERROR

    def in_process(self, params, progress):
        return _service_proxy.run_external_or_proxy(params, progress)
