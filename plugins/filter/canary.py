# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judgements of the servicemesh.istio.canary role: its inputs (weights,
subsets, steps), the order in which a change is applied (make-before-break),
the VirtualServices of other owners for the same host, the weighted subsets
that select no Ready pod, the binomial band a measured split must lie in, and
the metric gate of a progressive step."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.plugin_utils._data import as_dict as _dict, as_list as _list

DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')
LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')
LABEL_KEY = re.compile(r'^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$')
DURATION = re.compile(r'^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$')
MANAGED_BY = 'servicemesh.istio'
MEASURE_SOURCES = ('requests', 'prometheus')
ROLE_LABEL = 'servicemesh.istio/role'


def as_weight(value):
    """The integer 0..100 ``value`` stands for, or None (bools, floats, '20.5', -1 and 101 are not weights)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.match(r'^\s*[0-9]+\s*$', value):
        number = int(value)
    else:
        return None
    return number if 0 <= number <= 100 else None


def canary_weights(weights):
    """``weights`` as {subset: int}, in the order given (after canary_input_errors found nothing)."""
    if not isinstance(weights, Mapping):
        raise AnsibleFilterError('canary_weights expects a mapping of subset to weight, got %s' % type(weights).__name__)
    out = {}
    for name, value in weights.items():
        number = as_weight(value)
        if number is None:
            raise AnsibleFilterError('canary_weights: weight of %s is not an integer from 0 to 100: %r' % (name, value))
        out[str(name)] = number
    return out


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def _weight_errors(weights, subset_names, variable):
    errors = []
    if not isinstance(weights, Mapping):
        return ['%s must be a mapping of subset name to weight, such as {v1: 80, v2: 20}; got %r' % (variable, weights)]
    if not weights:
        return ['%s names no destination: give at least one subset with its weight, such as {v1: 100}' % variable]
    for name, value in weights.items():
        if as_weight(value) is None:
            errors.append('%s.%s must be an integer from 0 to 100, got %r' % (variable, name, value))
        if subset_names is not None and str(name) not in subset_names:
            errors.append('%s.%s names a subset that canary_subsets does not define (defined: %s)' % (
                variable, name, ', '.join(subset_names) or 'none'))
    if not errors:
        total = sum(as_weight(v) for v in weights.values())
        if total != 100:
            errors.append('%s must sum to 100, got %s (%s)' % (
                variable, total, ' + '.join('%s=%s' % (k, as_weight(v)) for k, v in weights.items())))
    return errors


def _duration_errors(value, variable):
    if value in (None, ''):
        return []
    if not isinstance(value, str) or not DURATION.match(value):
        return ['%s must be a duration such as 10s, 500ms or 1m30s, got %r' % (variable, value)]
    return []


def _resilience_errors(resilience):
    errors = []
    if not isinstance(resilience, Mapping):
        return ['canary_resilience must be a mapping, got %r' % (resilience,)]
    known = {'timeout', 'retries', 'connection_pool', 'outlier_detection'}
    for key in resilience:
        if key not in known:
            errors.append('canary_resilience.%s is not known (known: %s)' % (key, ', '.join(sorted(known))))
    errors += _duration_errors(resilience.get('timeout'), 'canary_resilience.timeout')
    retries = resilience.get('retries')
    if retries not in (None, {}):
        if not isinstance(retries, Mapping):
            errors.append('canary_resilience.retries must be a mapping (attempts, per_try_timeout, retry_on)')
        else:
            attempts = retries.get('attempts')
            if isinstance(attempts, bool) or not isinstance(attempts, int) or not 0 <= attempts <= 100:
                errors.append('canary_resilience.retries.attempts must be an integer from 0 to 100, got %r' % (attempts,))
            errors += _duration_errors(retries.get('per_try_timeout'), 'canary_resilience.retries.per_try_timeout')
            retry_on = retries.get('retry_on')
            if retry_on is not None and (not isinstance(retry_on, str)
                                         or not re.match(r'^[a-z0-9-]+(,[a-z0-9-]+)*$', retry_on)):
                errors.append('canary_resilience.retries.retry_on must be a comma-separated list such as '
                              '5xx,connect-failure, got %r' % (retry_on,))
    pool = resilience.get('connection_pool')
    if pool not in (None, {}):
        if not isinstance(pool, Mapping):
            errors.append('canary_resilience.connection_pool must be a mapping')
        else:
            for key in ('max_connections', 'http1_max_pending_requests', 'max_requests_per_connection'):
                value = pool.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    errors.append('canary_resilience.connection_pool.%s must be a positive integer, got %r' % (key, value))
            unknown = set(pool) - {'max_connections', 'http1_max_pending_requests', 'max_requests_per_connection'}
            errors += ['canary_resilience.connection_pool.%s is not known' % k for k in sorted(unknown)]
    outlier = resilience.get('outlier_detection')
    if outlier not in (None, {}):
        if not isinstance(outlier, Mapping):
            errors.append('canary_resilience.outlier_detection must be a mapping')
        else:
            value = outlier.get('consecutive_5xx_errors')
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                errors.append('canary_resilience.outlier_detection.consecutive_5xx_errors must be a positive integer, '
                              'got %r' % (value,))
            for key in ('interval', 'base_ejection_time'):
                errors += _duration_errors(outlier.get(key), 'canary_resilience.outlier_detection.%s' % key)
            value = outlier.get('max_ejection_percent')
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100):
                errors.append('canary_resilience.outlier_detection.max_ejection_percent must be an integer from 0 to '
                              '100, got %r' % (value,))
            unknown = set(outlier) - {'consecutive_5xx_errors', 'interval', 'base_ejection_time', 'max_ejection_percent'}
            errors += ['canary_resilience.outlier_detection.%s is not known' % k for k in sorted(unknown)]
    return errors


def canary_input_errors(params):
    """Every problem of the role's inputs, each naming its variable (empty: all good).

    ``params`` holds the role's variables without their ``canary_`` prefix: service, namespace, subsets, weights,
    mode, stable_subset, canary_subset, steps, threshold, success_rate_min, latency_p99_max_ms, min_requests,
    measure_requests, measure_sigma, measure_source, measure_window, resilience.
    """
    if not isinstance(params, Mapping):
        raise AnsibleFilterError('canary_input_errors expects a mapping of the role variables')
    errors = []
    for key in ('service', 'namespace'):
        value = params.get(key)
        if not isinstance(value, str) or not DNS_LABEL.match(value):
            errors.append('canary_%s %r is not a valid name (lower-case DNS label, at most 63 characters)' % (key, value))
    subsets = params.get('subsets')
    names = None
    if not isinstance(subsets, list) or not subsets:
        errors.append('canary_subsets must be a non-empty list of {name, labels}, got %r' % (subsets,))
    else:
        names = []
        for index, subset in enumerate(subsets):
            subset = _dict(subset)
            name = subset.get('name')
            if not isinstance(name, str) or not DNS_LABEL.match(name):
                errors.append('canary_subsets[%d].name %r is not a valid subset name (lower-case DNS label such as v2)'
                              % (index, name))
            elif name in names:
                errors.append('canary_subsets[%d].name %s is defined twice' % (index, name))
            else:
                names.append(name)
            labels = subset.get('labels')
            if not isinstance(labels, Mapping) or not labels:
                errors.append('canary_subsets[%d].labels must be a non-empty mapping of pod labels, such as '
                              '{version: v2}; got %r' % (index, labels))
            else:
                for key, value in labels.items():
                    if not LABEL_KEY.match(str(key)) or not isinstance(value, str) or not LABEL_VALUE.match(value):
                        errors.append('canary_subsets[%d].labels.%s: %r is not a valid label' % (index, key, value))
    errors += _weight_errors(params.get('weights'), names, params.get('weights_variable') or 'canary_weights')
    mode = params.get('mode', 'static')
    if mode not in ('static', 'progressive'):
        errors.append("canary_mode must be 'static' or 'progressive', got %r" % (mode,))
    if mode == 'progressive':
        for key in ('stable_subset', 'canary_subset'):
            value = params.get(key)
            if names is not None and value not in names:
                errors.append('canary_%s %r is not one of canary_subsets (%s)' % (key, value, ', '.join(names)))
        if params.get('stable_subset') == params.get('canary_subset'):
            errors.append('canary_stable_subset and canary_canary_subset must differ')
        steps = params.get('steps')
        if not isinstance(steps, list) or not steps or any(as_weight(s) is None or as_weight(s) == 0 for s in steps):
            errors.append('canary_steps must be a non-empty list of percentages from 1 to 100, got %r' % (steps,))
        elif [as_weight(s) for s in steps] != sorted({as_weight(s) for s in steps}):
            errors.append('canary_steps must increase, got %r' % (steps,))
        elif as_weight(steps[-1]) != 100:
            errors.append('canary_steps must end at 100 (the canary takes all the traffic), got %r' % (steps,))
        for key, low, high in (('threshold', 1, None), ('min_requests', 1, None), ('interval', 0, None),
                               ('success_rate_min', 0, 100), ('latency_p99_max_ms', 0, None)):
            value = params.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or \
                    (high is not None and value > high):
                errors.append('canary_%s must be a number %s, got %r' % (
                    key, 'from %s to %s' % (low, high) if high is not None else 'of at least %s' % low, value))
    requests = params.get('measure_requests', 200)
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        errors.append('canary_measure_requests must be a positive integer, got %r' % (requests,))
    sigma = params.get('measure_sigma', 3)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
        errors.append('canary_measure_sigma must be a positive number, got %r' % (sigma,))
    source = params.get('measure_source', 'requests')
    if source not in MEASURE_SOURCES:
        errors.append('canary_measure_source must be one of %s, got %r' % (', '.join(MEASURE_SOURCES), source))
    window = params.get('measure_window', 60)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        errors.append('canary_measure_window must be a positive number of seconds, got %r' % (window,))
    errors += _resilience_errors(params.get('resilience') or {})
    return errors


# ---------------------------------------------------------------------------
# What is on the cluster
# ---------------------------------------------------------------------------
def _host_names(service, namespace, cluster_domain):
    return {service, '%s.%s' % (service, namespace), '%s.%s.svc' % (service, namespace),
            '%s.%s.svc.%s' % (service, namespace, cluster_domain)}


def canary_foreign_virtual_services(virtual_services, service, namespace, own_name, cluster_domain='cluster.local'):
    """``<ns>/<name> (hosts ...)`` of each mesh VirtualService for the Service's host that this role does not own."""
    own = _host_names(service, namespace, cluster_domain)
    fqdn = '%s.%s.svc.%s' % (service, namespace, cluster_domain)
    out = []
    for vs in _list(virtual_services):
        meta = _dict(vs.get('metadata'))
        spec = _dict(vs.get('spec'))
        vs_namespace = meta.get('namespace')
        gateways = _list(spec.get('gateways'))
        if gateways and 'mesh' not in gateways:
            continue
        hits = []
        for host in _list(spec.get('hosts')):
            host = str(host)
            short_ok = vs_namespace == namespace and host in own
            if short_ok or host == fqdn or (host.startswith('*.') and fqdn.endswith(host[1:])):
                hits.append(host)
        if not hits:
            continue
        labels = _dict(meta.get('labels'))
        mine = (vs_namespace == namespace and meta.get('name') == own_name
                and labels.get('app.kubernetes.io/managed-by') == MANAGED_BY and labels.get(ROLE_LABEL) == 'canary')
        if not mine:
            out.append('%s/%s (hosts %s)' % (vs_namespace, meta.get('name'), ', '.join(hits)))
    return out


def _pod_ready(pod):
    status = _dict(pod.get('status'))
    if _dict(pod.get('metadata')).get('deletionTimestamp') or status.get('phase') != 'Running':
        return False
    return any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in _list(status.get('conditions')))


def canary_unready_subsets(pods, service, subsets, weights):
    """Subsets with a weight above 0 that select no Ready pod of the Service, as 'name (labels ...)'.

    ``service`` is the Service object (its selector narrows the pods)."""
    selector = _dict(_dict(_dict(service).get('spec')).get('selector'))
    wanted = {str(k): v for k, v in canary_weights(weights).items() if v > 0}
    out = []
    for subset in _list(subsets):
        name = subset.get('name')
        if name not in wanted:
            continue
        labels = dict(selector)
        labels.update(_dict(subset.get('labels')))
        ready = [p for p in _list(pods) if _pod_ready(p) and all(
            _dict(_dict(p.get('metadata')).get('labels')).get(k) == v for k, v in labels.items())]
        if not ready:
            out.append('%s (pods labelled %s)' % (name, ', '.join('%s=%s' % kv for kv in sorted(labels.items()))))
    return out


def canary_current_weights(virtual_service, service):
    """{subset: weight} of the first route of the role's VirtualService (empty when there is none)."""
    spec = _dict(_dict(virtual_service).get('spec'))
    for route in _list(spec.get('http')):
        destinations = _list(_dict(route).get('route'))
        if destinations:
            out = {}
            for dest in destinations:
                dest = _dict(dest)
                subset = str(_dict(dest.get('destination')).get('subset') or '')
                weight = dest.get('weight')
                out[subset] = 100 if weight is None and len(destinations) == 1 else int(weight or 0)
            return out
    return {}


def canary_plan(current_rule, wanted_subsets, wanted_weights):
    """How to apply: the subsets to add and remove, and the order (make-before-break).

    A subset the new VirtualService names must exist in the DestinationRule before the VirtualService sends to it
    (DestinationRule first); a subset the new DestinationRule drops must lose its traffic first (VirtualService
    first, then the DestinationRule). Both at once: DestinationRule with the union of subsets, VirtualService,
    then the DestinationRule without the dropped ones (order ``dr_vs_dr``)."""
    current = [s.get('name') for s in _list(_dict(_dict(current_rule).get('spec')).get('subsets'))]
    wanted = [s.get('name') for s in _list(wanted_subsets)]
    added = [n for n in wanted if n not in current]
    removed = [n for n in current if n not in wanted]
    if removed and added:
        order = 'dr_vs_dr'
    elif removed:
        order = 'vs_dr'
    else:
        order = 'dr_vs'
    kept = [s for s in _list(_dict(_dict(current_rule).get('spec')).get('subsets')) if s.get('name') in removed]
    return {'added': added, 'removed': removed, 'order': order, 'subsets': list(_list(wanted_subsets)),
            'union_subsets': list(_list(wanted_subsets)) + kept,
            'weights': canary_weights(wanted_weights)}


# ---------------------------------------------------------------------------
# Manifests' traffic policy
# ---------------------------------------------------------------------------
def canary_traffic_policy(resilience, tls_mode):
    """The DestinationRule's trafficPolicy: tls (ISTIO_MUTUAL or none; never DISABLE), connection pool, outlier detection."""
    if tls_mode not in ('ISTIO_MUTUAL', ''):
        raise AnsibleFilterError('canary_traffic_policy: the tls mode must be ISTIO_MUTUAL or empty, got %r' % tls_mode)
    policy = {}
    if tls_mode:
        policy['tls'] = {'mode': tls_mode}
    resilience = _dict(resilience)
    pool = _dict(resilience.get('connection_pool'))
    if pool:
        cp = {}
        if pool.get('max_connections') is not None:
            cp['tcp'] = {'maxConnections': pool['max_connections']}
        http = {}
        if pool.get('http1_max_pending_requests') is not None:
            http['http1MaxPendingRequests'] = pool['http1_max_pending_requests']
        if pool.get('max_requests_per_connection') is not None:
            http['maxRequestsPerConnection'] = pool['max_requests_per_connection']
        if http:
            cp['http'] = http
        policy['connectionPool'] = cp
    outlier = _dict(resilience.get('outlier_detection'))
    if outlier:
        od = {}
        for key, field in (('consecutive_5xx_errors', 'consecutive5xxErrors'), ('interval', 'interval'),
                           ('base_ejection_time', 'baseEjectionTime'), ('max_ejection_percent', 'maxEjectionPercent')):
            if outlier.get(key) is not None:
                od[field] = outlier[key]
        policy['outlierDetection'] = od
    return policy


def canary_http_route(service, weights, resilience):
    """The VirtualService's single HTTP route: weighted destinations, timeout, retries."""
    route = {'route': [{'destination': {'host': service, 'subset': name}, 'weight': weight}
                       for name, weight in canary_weights(weights).items()]}
    resilience = _dict(resilience)
    if resilience.get('timeout'):
        route['timeout'] = resilience['timeout']
    retries = _dict(resilience.get('retries'))
    if retries:
        out = {'attempts': retries.get('attempts', 0)}
        if retries.get('per_try_timeout'):
            out['perTryTimeout'] = retries['per_try_timeout']
        if retries.get('retry_on'):
            out['retryOn'] = retries['retry_on']
        route['retries'] = out
    return [route]


def canary_resilience_expect(resilience, service, host):
    """What servicemesh.istio.proxy_config_info must find on the callers' proxies for ``canary_resilience``
    (its O(expect)): the timeout and retries on the route to ``service`` (the name the weights are checked by),
    and the connection pool and outlier detection on every cluster of ``host`` (the Service's FQDN). Empty lists
    for what the resilience does not set."""
    resilience = _dict(resilience)
    route = {}
    if resilience.get('timeout'):
        route['timeout'] = resilience['timeout']
    retries = _dict(resilience.get('retries'))
    if retries:
        route['retries'] = {'attempts': retries.get('attempts', 0)}
        route['retries'].update((key, retries[key]) for key in ('per_try_timeout', 'retry_on') if retries.get(key))
    policy = {}
    for section in ('connection_pool', 'outlier_detection'):
        values = dict((key, value) for key, value in _dict(resilience.get(section)).items() if value is not None)
        if values:
            policy[section] = values
    return {'routes': [dict(route, host=service)] if route else [],
            'traffic_policies': [dict(policy, host=host)] if policy else []}


# ---------------------------------------------------------------------------
# The measured split
# ---------------------------------------------------------------------------
def canary_classify(body):
    """The reviews version a Bookinfo productpage shows: v3 red stars, v2 black stars, v1 reviews without stars;
    ``unclassified`` when the page shows no review (reviews unavailable, or not a product page)."""
    text = body if isinstance(body, str) else ''
    if 'color="red"' in text:
        return 'v3'
    if 'color="black"' in text:
        return 'v2'
    if '<blockquote>' in text:
        return 'v1'
    return 'unclassified'


def canary_split_verdict(counts, weights, sigma=3, subsets=None, min_total=1):
    """Per subset, observed count and share against the expected share with a binomial band of ``sigma`` standard
    deviations; ``ok`` when every subset lies inside its band. ``counts`` may be keyed by reviews version: with
    ``subsets``, a version counts for the subset whose ``labels.version`` it is. Observations of anything else count
    against the total and are listed with an expected share of 0 (when there are any).

    ``verdict`` is ``pass``, ``fail``, or ``undecided`` when fewer than ``min_total`` observations were counted
    (no traffic is never a pass)."""
    weights = canary_weights(weights)
    sigma = float(sigma)
    min_total = max(1, int(min_total))
    by_version = {str(_dict(s.get('labels')).get('version')): s.get('name') for s in _list(subsets)
                  if _dict(s.get('labels')).get('version')}
    counts_in = {str(k): int(v) for k, v in _dict(counts).items()}
    counts = {}
    for key, value in counts_in.items():
        name = key if key in weights else by_version.get(key, key)
        counts[name] = counts.get(name, 0) + value
    total = sum(counts.values())
    rows = []
    for name in list(weights) + [k for k in counts if k not in weights and counts[k] > 0]:
        expected = weights.get(name, 0) / 100.0
        count = counts.get(name, 0)
        share = count / total if total else 0.0
        spread = sigma * math.sqrt(expected * (1 - expected) / total) if total else 0.0
        low, high = max(0.0, expected - spread), min(1.0, expected + spread)
        ok = total > 0 and low - 1e-9 <= share <= high + 1e-9
        rows.append({'subset': name or '(none)', 'count': count, 'share': round(share, 4), 'expected': expected,
                     'low': round(low, 4), 'high': round(high, 4), 'ok': ok,
                     'line': '%s: %d of %d (%.1f%%), expected %.1f%%, band %.1f%%..%.1f%% (%g sigma): %s' % (
                         name or '(none)', count, total, 100 * share, 100 * expected, 100 * low, 100 * high,
                         sigma, 'inside' if ok else 'OUTSIDE')})
    if total < min_total:
        return {'total': total, 'ok': False, 'verdict': 'undecided', 'subsets': rows,
                'lines': ['no request was classified' if min_total == 1 else
                          'cannot decide: %d requests counted, at least %d needed' % (total, min_total)]}
    ok = all(r['ok'] for r in rows)
    return {'total': total, 'ok': ok, 'verdict': 'pass' if ok else 'fail', 'subsets': rows,
            'lines': [r['line'] for r in rows]}


def canary_prometheus_counts(answer, label='destination_version'):
    """Requests per ``label`` value counted from a Prometheus answer to a range-vector query of a counter
    (``istio_requests_total{...}[60s]``, resultType matrix): for each series, the increase between its first and
    its last sample in the window, a counter reset (a value lower than the one before) counting from zero. Unlike
    PromQL's ``increase()``, nothing is extrapolated to the window's edges, so the sum is the number of requests
    really counted (what a binomial band needs). A series without the label counts under ``unknown``."""
    answer = _dict(answer)
    if answer.get('status', 'success') != 'success':
        raise AnsibleFilterError('canary_prometheus_counts: Prometheus answered %s: %s' % (
            answer.get('status'), answer.get('error', '')))
    data = _dict(answer.get('data'))
    if data.get('resultType') not in (None, 'matrix'):
        raise AnsibleFilterError('canary_prometheus_counts expects the answer to a range-vector query (matrix), got %s'
                                 % data.get('resultType'))
    out = {}
    for series in _list(data.get('result')):
        series = _dict(series)
        key = str(_dict(series.get('metric')).get(label) or 'unknown')
        values = []
        for sample in _list(series.get('values')):
            try:
                values.append(float(_list(sample)[1]))
            except (IndexError, TypeError, ValueError):
                continue
        increase = 0.0
        for before, after in zip(values, values[1:]):
            increase += after - before if after >= before else after
        out[key] = out.get(key, 0) + increase
    return {key: int(round(value)) for key, value in out.items()}


# ---------------------------------------------------------------------------
# Progressive delivery
# ---------------------------------------------------------------------------
def _scalar(result):
    """The value of a Prometheus instant-vector answer (first sample), or None when it holds no sample."""
    data = _dict(_dict(result).get('data'))
    samples = _list(data.get('result'))
    if not samples:
        return None
    value = _list(_dict(samples[0]).get('value'))
    if len(value) < 2:
        return None
    try:
        number = float(value[1])
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def canary_gate(total, errors, p99, min_requests, success_rate_min, latency_p99_max_ms):
    """The verdict of one step's gates from three Prometheus answers (requests, 5xx, p99 in ms):
    ``pass``, ``fail`` or ``undecided`` (too few requests: never a pass), with the figures."""
    requests = _scalar(total) or 0.0
    failed = _scalar(errors) or 0.0
    latency = _scalar(p99)
    if requests < min_requests:
        return {'verdict': 'undecided', 'requests': round(requests, 1), 'success_rate': None, 'p99_ms': latency,
                'message': 'cannot decide: %.0f requests to the canary in the window, at least %s needed' % (
                    requests, min_requests)}
    rate = 100.0 * (requests - failed) / requests
    reasons = []
    if rate < success_rate_min:
        reasons.append('success rate %.2f%% below %s%%' % (rate, success_rate_min))
    if latency is None:
        reasons.append('no p99 latency sample')
    elif latency > latency_p99_max_ms:
        reasons.append('p99 %.0f ms above %s ms' % (latency, latency_p99_max_ms))
    figures = 'success rate %.2f%% (min %s%%), p99 %s ms (max %s ms), %.0f requests' % (
        rate, success_rate_min, 'none' if latency is None else '%.0f' % latency, latency_p99_max_ms, requests)
    return {'verdict': 'fail' if reasons else 'pass', 'requests': round(requests, 1), 'success_rate': round(rate, 2),
            'p99_ms': None if latency is None else round(latency, 1),
            'message': ('%s: %s' % ('; '.join(reasons), figures)) if reasons else figures}


def canary_remaining_steps(current_weights, steps, canary_subset):
    """The steps still to take, resuming from the canary's current weight (a rerun goes on from there)."""
    current = canary_weights(current_weights or {}).get(canary_subset, 0)
    return [as_weight(s) for s in steps if as_weight(s) > current]


def canary_step_weights(percent, stable_subset, canary_subset, subsets):
    """{subset: weight} for a step: the canary at ``percent``, the stable at the rest, other subsets at 0."""
    out = {}
    for subset in _list(subsets):
        out[subset['name']] = 0
    out[stable_subset] = 100 - int(percent)
    out[canary_subset] = int(percent)
    return out


def canary_promoted_subsets(subsets, stable_subset, canary_subset):
    """The subsets once the canary is promoted as the new stable subset: ``stable_subset`` selects the pods of
    ``canary_subset`` (its labels become the canary's); every other subset, the canary's included, is unchanged."""
    canary = [s for s in _list(subsets) if s.get('name') == canary_subset]
    if not canary or not any(s.get('name') == stable_subset for s in _list(subsets)):
        raise AnsibleFilterError('canary_promoted_subsets: %s and %s must both be subsets' % (stable_subset, canary_subset))
    return [dict(s, labels=dict(_dict(canary[0].get('labels')))) if s.get('name') == stable_subset else s
            for s in _list(subsets)]


def canary_promoted_as_stable(current_rule, current_weights, stable_subset, canary_subset, subsets):
    """Whether the cluster already holds the canary promoted as the new stable subset: ``stable_subset`` takes all
    the traffic and its labels in the DestinationRule on the cluster are the canary's (from ``subsets``)."""
    weights = canary_weights(current_weights or {})
    if weights.get(stable_subset) != 100:
        return False
    wanted = [s for s in _list(subsets) if s.get('name') == canary_subset]
    on_cluster = [_dict(s) for s in _list(_dict(_dict(current_rule).get('spec')).get('subsets'))
                  if _dict(s).get('name') == stable_subset]
    return bool(wanted and on_cluster) and dict(_dict(on_cluster[0].get('labels'))) == dict(
        _dict(wanted[0].get('labels')))


class FilterModule:
    """The canary role's judgements."""

    def filters(self):
        return {
            'canary_input_errors': canary_input_errors,
            'canary_weights': canary_weights,
            'canary_foreign_virtual_services': canary_foreign_virtual_services,
            'canary_unready_subsets': canary_unready_subsets,
            'canary_current_weights': canary_current_weights,
            'canary_plan': canary_plan,
            'canary_traffic_policy': canary_traffic_policy,
            'canary_http_route': canary_http_route,
            'canary_resilience_expect': canary_resilience_expect,
            'canary_classify': canary_classify,
            'canary_split_verdict': canary_split_verdict,
            'canary_gate': canary_gate,
            'canary_remaining_steps': canary_remaining_steps,
            'canary_step_weights': canary_step_weights,
            'canary_prometheus_counts': canary_prometheus_counts,
            'canary_promoted_subsets': canary_promoted_subsets,
            'canary_promoted_as_stable': canary_promoted_as_stable,
        }
