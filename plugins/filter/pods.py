# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judgements over pods as kubernetes.core.k8s_info returns them."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.plugin_utils._data import as_dict as _dict, as_list as _list

PROXY = 'istio-proxy'


def has_istio_proxy(pod):
    """Whether the pod has Istio's sidecar: a container istio-proxy, or an init
    container of that name (Istio's native sidecars, Kubernetes 1.29+)."""
    spec = _dict(pod.get('spec'))
    return any(_dict(c).get('name') == PROXY for c in _list(spec.get('containers')) + _list(spec.get('initContainers')))


def is_ready(pod):
    return any(_dict(c).get('type') == 'Ready' and _dict(c).get('status') == 'True'
               for c in _list(_dict(pod.get('status')).get('conditions')))


def app_pods_status(pods, apps):
    """Of the pods not being deleted: their names (``live``), the ``apps`` (values
    of the label ``app``) with none of them (``missing_apps``, in the order of
    ``apps``), those not Ready (``unready``) and those without istio-proxy
    (``without_sidecar``)."""
    if not isinstance(pods, list):
        raise AnsibleFilterError('app_pods_status expects the pods k8s_info returns (a list), got %s'
                                 % type(pods).__name__)
    live = [_dict(p) for p in pods if _dict(_dict(p).get('metadata')).get('deletionTimestamp') is None]

    def name(pod):
        return _dict(pod.get('metadata')).get('name')

    present = {_dict(_dict(p.get('metadata')).get('labels')).get('app') for p in live}
    return {
        'live': [name(p) for p in live],
        'missing_apps': [app for app in apps if app not in present],
        'unready': [name(p) for p in live if not is_ready(p)],
        'without_sidecar': [name(p) for p in live if not has_istio_proxy(p)],
    }


class FilterModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio filters over pods."""

    def filters(self):
        return {'app_pods_status': app_pods_status}
