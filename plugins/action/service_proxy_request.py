# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.service_proxy_request: runs the module with the connection
options of kubernetes.core's module_defaults groups as well as its own."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import KubernetesAction


class ActionModule(KubernetesAction):
    """Run service_proxy_request with kubernetes.core's group defaults for the connection."""
