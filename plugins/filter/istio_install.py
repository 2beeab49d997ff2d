# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the servicemesh.istio.istio_install role installs, decided from its
settings: the Helm releases in Istio's order, their values, the objects the
control plane's charts make; and how the releases Helm reported compare with
the pinned version."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

# The settings istio_install_plan reads, with the role's defaults
# (roles/istio_install/defaults/main.yml); gateway_namespace defaults to namespace.
SETTINGS = {
    'namespace': None,
    'mode': 'sidecar',
    'profile': 'demo',
    'revision': '',
    'hub': '',
    'tag': '',
    'gateway_enabled': True,
    'gateway_name': 'istio-ingressgateway',
    'gateway_namespace': None,
    'gateway_label': 'ingressgateway',
    'gateway_service_type': 'LoadBalancer',
    'gateway_load_balancer_ip': '',
    'gateway_service_annotations': {},
    'gateway_load_balancer_source_ranges': [],
    'gateway_replicas': 1,
    'gateway_autoscale_max': 0,
    'extra_values': {},
}
CHARTS = ('base', 'istiod', 'cni', 'ztunnel', 'gateway')


def _merge(base, over):
    """``base`` with ``over`` merged into it as ``combine(recursive=true)`` does:
    mappings merge key by key, anything else (lists included) replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in (over or {}).items():
        if isinstance(out.get(key), Mapping) and isinstance(value, Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _int(settings, key):
    try:
        return int(settings[key])
    except (TypeError, ValueError):
        raise AnsibleFilterError('istio_install_plan: %s must be an integer, got %r' % (key, settings[key])) from None


def _settings(value):
    if not isinstance(value, Mapping):
        raise AnsibleFilterError('istio_install_plan expects a dict of settings, got %s' % type(value).__name__)
    unknown = sorted(set(value) - set(SETTINGS))
    if unknown:
        raise AnsibleFilterError('istio_install_plan: unknown settings %s (known: %s)'
                                 % (', '.join(unknown), ', '.join(SETTINGS)))
    settings = dict(SETTINGS, **value)
    if not settings['namespace']:
        raise AnsibleFilterError('istio_install_plan: the setting namespace is required')
    settings['gateway_namespace'] = settings['gateway_namespace'] or settings['namespace']
    settings['gateway_enabled'] = boolean(settings['gateway_enabled'], strict=False)
    settings['gateway_replicas'] = _int(settings, 'gateway_replicas')
    settings['gateway_autoscale_max'] = _int(settings, 'gateway_autoscale_max')
    extra = settings['extra_values'] or {}
    if not isinstance(extra, Mapping):
        raise AnsibleFilterError('istio_install_plan: extra_values must be a dict of Helm values per chart')
    settings['extra_values'] = extra
    return settings


def _global_values(s):
    values = {'istioNamespace': s['namespace']}
    if s['hub']:
        values['hub'] = s['hub']
    if s['tag']:
        values['tag'] = s['tag']
    return values


def _revision(s):
    return {'revision': s['revision']} if s['revision'] else {}


def _gateway_values(s):
    service = {'type': s['gateway_service_type']}
    if s['gateway_load_balancer_ip']:
        service['loadBalancerIP'] = s['gateway_load_balancer_ip']
    if s['gateway_service_annotations']:
        service['annotations'] = s['gateway_service_annotations']
    if s['gateway_load_balancer_source_ranges']:
        service['loadBalancerSourceRanges'] = s['gateway_load_balancer_source_ranges']
    replicas, most = s['gateway_replicas'], s['gateway_autoscale_max']
    # A HorizontalPodAutoscaler only when the maximum is above the fixed count.
    autoscaling = {'enabled': most > replicas}
    if most > replicas:
        autoscaling.update(minReplicas=replicas, maxReplicas=most)
    return dict({'labels': {'istio': s['gateway_label']}, 'replicaCount': replicas,
                 'service': service, 'autoscaling': autoscaling}, **_revision(s))


def _helm_values(s):
    """The role's own Helm values per chart, istio_install_extra_values merged over them."""
    ambient = {'profile': 'ambient', 'global': _global_values(s)}
    own = {
        'base': {'global': _global_values(s), 'defaultRevision': s['revision'] or 'default'},
        # Istio's "default" profile is the charts' own defaults: no profile value for it.
        'istiod': dict({} if s['profile'] == 'default' else {'profile': s['profile']},
                       **{'global': _global_values(s),
                          'meshConfig': {'ingressService': s['gateway_name'], 'ingressSelector': s['gateway_label']}},
                       **_revision(s)),
        'cni': ambient,
        'ztunnel': dict(ambient, **_revision(s)),
        'gateway': _gateway_values(s),
    }
    return {chart: _merge(own[chart], s['extra_values'].get(chart) or {}) for chart in CHARTS}


def istio_install_plan(settings):
    """``{charts, releases, helm_values, control_plane_objects}`` for the role's settings."""
    s = _settings(settings)
    ns = s['namespace']
    suffix = '-' + s['revision'] if s['revision'] else ''
    ambient = s['mode'] == 'ambient'
    releases = [{'name': 'istio-base', 'chart': 'base', 'namespace': ns},
                {'name': 'istiod' + suffix, 'chart': 'istiod', 'namespace': ns}]
    objects = [{'kind': 'Deployment', 'name': 'istiod' + suffix, 'namespace': ns},
               {'kind': 'MutatingWebhookConfiguration', 'name': 'istio-sidecar-injector' + suffix}]
    if ambient:
        releases += [{'name': 'istio-cni', 'chart': 'cni', 'namespace': ns},
                     {'name': 'ztunnel', 'chart': 'ztunnel', 'namespace': ns}]
        objects += [{'kind': 'DaemonSet', 'name': 'istio-cni-node', 'namespace': ns},
                    {'kind': 'DaemonSet', 'name': 'ztunnel', 'namespace': ns}]
    if s['gateway_enabled']:
        releases.append({'name': s['gateway_name'], 'chart': 'gateway', 'namespace': s['gateway_namespace']})
    return {
        'charts': [r['chart'] for r in releases],
        'releases': releases,
        'helm_values': _helm_values(s),
        'control_plane_objects': objects,
    }


def istio_release_status(releases, results, version):
    """Each release beside what Helm reported for it (``results``: the helm
    tasks' results, in the order of ``releases``):
    ``{name, namespace, status, chart, expected, ok}``."""
    if not isinstance(releases, list) or not isinstance(results, list):
        raise AnsibleFilterError('istio_release_status expects the list of releases and the list of helm results')
    out = []
    for release, result in zip(releases, results):
        status = (result or {}).get('status') or {}
        entry = {
            'name': release['name'],
            'namespace': release['namespace'],
            'status': str(status.get('status', 'missing')).lower(),
            'chart': status.get('chart', 'no chart'),
            'expected': '%s-%s' % (release['chart'], version),
        }
        entry['ok'] = entry['status'] == 'deployed' and entry['chart'] == entry['expected']
        out.append(entry)
    return out


class FilterModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio filters for the istio_install role."""

    def filters(self):
        return {'istio_install_plan': istio_install_plan, 'istio_release_status': istio_release_status}
