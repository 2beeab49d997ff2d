# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.wait_for_certificate: runs the module with the connection
options of kubernetes.core's module_defaults groups as well as its own."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import KubernetesAction


class ActionModule(KubernetesAction):
    """Run wait_for_certificate with kubernetes.core's group defaults for the connection."""
