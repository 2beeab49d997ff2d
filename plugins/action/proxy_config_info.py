# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.proxy_config_info: in process on the controller, else the module."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _proxy_info, _xds
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC
from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import InProcessAction

# Imported once, when the controller loads this plugin; the workers it forks inherit them.
_IMPORT_ERROR = _k8s.import_kubernetes() or _xds.import_xds()


class ActionModule(InProcessAction):
    """Run proxy_config_info's logic in the worker process when the task runs on the controller."""

    ARGUMENT_SPEC = dict(_proxy_info.PROXY_CONFIG_INFO_SPEC, **WAIT_ARGUMENT_SPEC, **_k8s.AUTH_ARG_SPEC)
    VALIDATOR_KWARGS = dict(mutually_exclusive=[('name', 'label_selectors')])
    IMPORT_ERROR = _IMPORT_ERROR

    def in_process(self, params, progress):
        return _proxy_info.run_proxy_config_info(params, progress)
