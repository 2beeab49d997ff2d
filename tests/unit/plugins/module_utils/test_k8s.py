# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _k8s: argument spec, environment fallbacks, readiness and
issuance explanations."""

from __future__ import annotations

import pytest

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC as CORE_SPEC
from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s


def test_auth_arg_spec_mirrors_kubernetes_core():
    assert set(_k8s.AUTH_ARG_SPEC) == set(CORE_SPEC)
    for name, spec in CORE_SPEC.items():
        ours = _k8s.AUTH_ARG_SPEC[name]
        assert ours.get('type', 'str') == spec.get('type', 'str'), name
        assert ours.get('aliases') == spec.get('aliases'), name
        assert bool(ours.get('no_log')) == bool(spec.get('no_log')), name


def test_auth_params_environment_fallbacks():
    env = {'K8S_AUTH_HOST': 'https://127.0.0.1:6443', 'K8S_AUTH_VERIFY_SSL': 'no',
           'K8S_AUTH_IMPERSONATE_GROUPS': 'a,b', 'K8S_AUTH_API_KEY': 'from-env',
           'K8S_AUTH_PROXY_HEADERS_USER_AGENT': 'test/1.0'}
    auth = _k8s.auth_params({'api_key': 'explicit', 'context': None}, environ=env)
    assert auth['host'] == 'https://127.0.0.1:6443'
    assert auth['validate_certs'] is False
    assert auth['impersonate_groups'] == ['a', 'b']
    assert auth['api_key'] == 'explicit'
    assert auth['proxy_headers'] == {'user_agent': 'test/1.0'}
    assert 'context' not in auth


def test_build_api_client_from_explicit_options():
    assert _k8s.import_kubernetes() is None
    client = _k8s.build_api_client({'host': 'https://127.0.0.1:6443/', 'api_key': 'tok', 'validate_certs': False,
                                    'impersonate_user': 'alice'}, environ={})
    assert client.configuration.host == 'https://127.0.0.1:6443'
    assert client.configuration.api_key == {'authorization': 'Bearer tok'}
    assert client.configuration.verify_ssl is False
    assert client.default_headers['Impersonate-User'] == 'alice'


def _cert(ready=None, generation=1, observed=1, not_after='2030-01-01T00:00:00Z', extra=None, **status):
    conditions = []
    if ready is not None:
        conditions.append({'type': 'Ready', 'status': ready, 'reason': 'R', 'message': 'm',
                           'observedGeneration': observed})
    conditions.extend(extra or [])
    st = {'conditions': conditions}
    if not_after:
        st['notAfter'] = not_after
    st.update(status)
    return {'metadata': {'name': 'c', 'uid': 'u', 'generation': generation}, 'status': st}


@pytest.mark.parametrize('cert, ready, reason', [
    (_cert('True'), True, None),
    (_cert('False'), False, 'Ready=False (R: m)'),
    (_cert('Unknown'), False, 'Ready=Unknown (R: m)'),
    (_cert(None), False, 'it has no Ready condition yet'),
    (_cert('True', generation=3, observed=2), False, 'Ready=True is for generation 2, the spec is at generation 3'),
    (_cert('True', not_after=None), False, 'status.notAfter is not set'),
    ({'metadata': {'name': 'c'}}, False, 'it has no Ready condition yet'),
])
def test_certificate_readiness(cert, ready, reason):
    is_ready, reasons, notes = _k8s.certificate_readiness(cert)
    assert is_ready is ready
    if reason:
        assert reasons[0] == reason
    else:
        assert reasons == []


def test_renewal_in_progress_is_a_note_not_a_blocker():
    cert = _cert('True', extra=[{'type': 'Issuing', 'status': 'True', 'reason': 'Renewing', 'message': 'soon'}],
                 failedIssuanceAttempts=2, lastFailureTime='2026-01-01T00:00:00Z')
    ready, reasons, notes = _k8s.certificate_readiness(cert)
    assert ready and reasons == []
    assert notes == ['Issuing=True (Renewing: soon)', '2 failed issuance attempt(s), the last at 2026-01-01T00:00:00Z']


def test_issuance_details_picks_latest_request_and_its_order():
    cert = {'metadata': {'name': 'gw', 'uid': 'cert-uid'}}

    def request(name, revision, uid, owner='cert-uid', conditions=()):
        return {'metadata': {'name': name, 'uid': uid,
                             'annotations': {'cert-manager.io/certificate-revision': str(revision)},
                             'ownerReferences': [{'uid': owner}]},
                'status': {'conditions': list(conditions)}}

    requests = [
        request('gw-1', 1, 'r1', conditions=[{'type': 'Ready', 'status': 'False', 'reason': 'Failed'}]),
        request('gw-2', 2, 'r2', conditions=[{'type': 'Ready', 'status': 'False', 'reason': 'Pending'}]),
        request('other-9', 9, 'r9', owner='someone-else'),
    ]
    orders = [{'metadata': {'name': 'gw-2-1', 'uid': 'o2', 'ownerReferences': [{'uid': 'r2'}]},
               'status': {'state': 'invalid', 'reason': 'rate limited'}}]
    challenges = [{'metadata': {'name': 'gw-2-1-a', 'ownerReferences': [{'uid': 'o2'}]},
                   'spec': {'dnsName': 'istio.example.com', 'type': 'DNS-01'},
                   'status': {'state': 'invalid'}}]
    assert _k8s.issuance_details(cert, requests, orders, challenges) == [
        'latest CertificateRequest gw-2: Ready=False (Pending)',
        'Order gw-2-1: state invalid (rate limited)',
        'Challenge gw-2-1-a (istio.example.com, DNS-01): state invalid',
    ]
    assert _k8s.issuance_details(cert, [], orders, challenges) == []


# ---------------------------------------------------------------------------
# A kubeconfig path that does not exist: the path and where it came from
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('params, environ, source', [
    ({'kubeconfig': '{missing}'}, {}, 'from the kubeconfig option'),
    ({}, {'K8S_AUTH_KUBECONFIG': '{missing}'}, 'from K8S_AUTH_KUBECONFIG'),
    ({}, {'KUBECONFIG': '{missing}'}, 'from KUBECONFIG'),
    ({'kubeconfig': '{missing}'}, {'K8S_AUTH_KUBECONFIG': '/elsewhere'}, 'from the kubeconfig option'),
])
def test_a_missing_kubeconfig_names_the_path_and_the_setting(tmp_path, params, environ, source):
    missing = str(tmp_path / 'no-such-kubeconfig.yaml')
    params = {k: v.format(missing=missing) for k, v in params.items()}
    environ = {k: v.format(missing=missing) for k, v in environ.items()}
    assert _k8s.import_kubernetes() is None
    with pytest.raises(_k8s.KubeConfigError) as caught:
        _k8s.build_api_client(params, environ=environ)
    msg = str(caught.value)
    assert msg == "the kubeconfig file '%s' does not exist (%s)" % (missing, source), msg
    assert 'No configuration found' not in msg


def test_the_default_kubeconfig_is_named_when_nothing_is_set(tmp_path, monkeypatch):
    assert _k8s.import_kubernetes() is None
    monkeypatch.setenv('HOME', str(tmp_path))  # ~ is expanded from the process's HOME
    with pytest.raises(_k8s.KubeConfigError) as caught:
        _k8s.build_api_client({}, environ={})
    assert "'~/.kube/config' does not exist (from the default" in str(caught.value), str(caught.value)


def test_an_existing_kubeconfig_in_a_list_is_enough(tmp_path):
    good = tmp_path / 'config'
    good.write_text('apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]\n'
                    'users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n'
                    'current-context: x\n')
    assert _k8s.missing_kubeconfig({'kubeconfig': '%s:%s' % (tmp_path / 'nope', good)}, environ={}) is None
    client = _k8s.build_api_client({'kubeconfig': str(good)}, environ={})
    assert client.configuration.host == 'https://127.0.0.1:6443'
