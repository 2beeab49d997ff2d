# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the results of servicemesh.istio.proxy_config_info."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def inbound_modes(proxies):
    """One entry per sidecar and inbound port: ``{pod, namespace, port, mode, accepts, source}``."""
    if not isinstance(proxies, list):
        raise AnsibleFilterError('inbound_modes expects the proxies list of proxy_config_info, got %s'
                                 % type(proxies).__name__)
    out = []
    for proxy in proxies:
        for item in proxy.get('inbound') or []:
            out.append({
                'pod': proxy.get('name'),
                'namespace': proxy.get('namespace'),
                'port': item.get('port'),
                'mode': item.get('mode'),
                'accepts': item.get('accepts') or [],
                'source': proxy.get('source'),
            })
    return out


class FilterModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio filters for proxy configuration."""

    def filters(self):
        return {'inbound_modes': inbound_modes}
