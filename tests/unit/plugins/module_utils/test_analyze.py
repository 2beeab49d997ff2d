# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_analyze: the command line, parsing, scope and verdict of istioctl analyze,
on output recorded from the test cluster's istioctl (tests/unit/plugins/fixtures/
istio_analyze/, see the README there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils import _analyze

FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures' / 'istio_analyze'


def recorded(name):
    return (FIXTURES / name).read_text()


def params(**kwargs):
    out = {'istioctl': 'istioctl', 'required': False, 'namespaces': [], 'istio_namespace': 'istio-system',
           'revision': '', 'accept': {}, 'fail_on_warnings': False, 'timeout': 60, 'kubeconfig': None,
           'context': None}
    out.update(kwargs)
    return out


def test_command_line():
    argv = _analyze.analyze_command('/bin/istioctl', params(revision='1-30-4', context='smistio', timeout=20),
                                    '/tmp/kc')
    assert argv[:6] == ['/bin/istioctl', 'analyze', '--all-namespaces', '--output', 'json', '--color=false']
    joined = ' '.join(argv)
    assert '--istioNamespace istio-system' in joined and '--timeout 20s' in joined
    assert '--revision 1-30-4' in joined and '--kubeconfig /tmp/kc' in joined and '--context smistio' in joined
    plain = _analyze.analyze_command('istioctl', params())
    assert '--revision' not in plain and '--kubeconfig' not in plain and '--context' not in plain


@pytest.mark.parametrize('origin, expected', [
    ('VirtualService default/reviews', ('VirtualService', 'default', 'reviews')),
    ('Namespace default', ('Namespace', '', 'default')),
    ('MutatingWebhookConfiguration istio-sidecar-injector', ('MutatingWebhookConfiguration', '', 'istio-sidecar-injector')),
    ('SoapBubble', ('', '', 'SoapBubble')),
    ('', ('', '', '')),
])
def test_parse_origin(origin, expected):
    assert _analyze.parse_origin(origin) == expected


def test_parse_recorded_clean_output():
    messages = _analyze.parse_messages(recorded('converged.json'))
    assert all(m['level'] == 'Info' for m in messages), messages
    verdict = _analyze.judge(messages, ['istio-system', 'default'], {}, True)
    assert verdict['failing'] == [] and verdict['counts']['error'] == verdict['counts']['warning'] == 0


def test_parse_recorded_fresh_cluster():
    messages = _analyze.parse_messages(recorded('fresh.json'))
    assert [(m['level'], m['code'], m['kind'], m['name']) for m in messages] == [
        ('Info', 'IST0102', 'Namespace', 'default')]
    verdict = _analyze.judge(messages, ['istio-system', 'default'], {}, True)
    assert verdict['failing'] == [] and verdict['counts'] == {'error': 0, 'warning': 0, 'info': 1}
    assert _analyze.summary(verdict, ['istio-system', 'default'])[0] == (
        'istioctl analyze (istio-system, default): 0 error(s), 0 warning(s), 1 info(s)')
    assert _analyze.judge(messages, ['istio-system'], {}, True)['out_of_scope'] == 1


def test_parse_recorded_ist0101():
    messages = _analyze.parse_messages(recorded('ist0101.json'))
    errors = [m for m in messages if m['level'] == 'Error']
    assert [(m['code'], m['kind'], m['namespace'], m['name']) for m in errors] == [
        ('IST0101', 'VirtualService', 'default', 'reviews-broken')]
    assert 'reviews+v9' in errors[0]['message']
    assert errors[0]['documentation_url'].endswith('/ist0101/?ref=istioctl-analyze')


@pytest.mark.parametrize('text', ['null', '[]', 'null\n'])
def test_empty_output_means_no_message(text):
    assert _analyze.parse_messages(text) == []


@pytest.mark.parametrize('text, words', [
    ('', 'printed nothing'),
    ('Error [IST0101] (VirtualService default/x) text', 'did not print JSON'),
    ('{"code": "IST0101"}', 'not a list'),
    ('[{"message": "no code"}]', 'not an analyzer message'),
])
def test_unreadable_output(text, words):
    with pytest.raises(ValueError, match=words):
        _analyze.parse_messages(text)


def message(code='IST0101', level='Error', origin='VirtualService default/reviews', text='broken'):
    kind, namespace, name = _analyze.parse_origin(origin)
    return {'code': code, 'level': level, 'origin': origin, 'kind': kind, 'namespace': namespace, 'name': name,
            'message': text, 'documentation_url': ''}


@pytest.mark.parametrize('msg, namespaces, kept', [
    (message(), [], True),
    (message(), ['default'], True),
    (message(), ['istio-system'], False),
    (message(origin='Namespace default', level='Info', code='IST0102'), ['default'], True),
    (message(origin='Namespace kube-system', level='Info', code='IST0102'), ['default'], False),
    (message(origin='MutatingWebhookConfiguration istio-sidecar-injector', code='IST0139'), ['default'], True),
    (message(origin=''), ['default'], True),
])
def test_scope(msg, namespaces, kept):
    assert _analyze.in_scope(msg, namespaces) is kept


def test_errors_fail_warnings_do_not_unless_asked():
    messages = [message(), message('IST0108', 'Warning', 'Service default/web', 'Unknown annotation'),
                message('IST0102', 'Info', 'Namespace default', 'not injected'),
                message(origin='VirtualService other/reviews')]
    verdict = _analyze.judge(messages, ['default'], {}, False)
    assert verdict['failing'] == ['Error [IST0101] (VirtualService default/reviews) broken']
    assert verdict['warnings_reported'] == ['Warning [IST0108] (Service default/web) Unknown annotation']
    assert verdict['counts'] == {'error': 1, 'warning': 1, 'info': 1}
    assert verdict['out_of_scope'] == 1
    assert [m['failing'] for m in verdict['messages']] == [True, False, False]
    strict = _analyze.judge(messages, ['default'], {}, True)
    assert len(strict['failing']) == 2 and strict['warnings_reported'] == []
    text = _analyze.failure_message(strict, ['default'])
    assert '1 error(s) and 1 warning(s) (fail_on_warnings is set) in default' in text
    assert 'IST0101] (VirtualService default/reviews)' in text and 'IST0108] (Service default/web)' in text


def test_accepted_codes_are_reported_with_their_reason():
    messages = [message(), message('IST0108', 'Warning', 'Service default/web', 'Unknown annotation')]
    accept = {'IST0101': 'the subset comes with the next release', 'IST0108': 'our own annotation'}
    verdict = _analyze.judge(messages, [], accept, True)
    assert verdict['failing'] == []
    assert verdict['accepted'] == [
        'Error [IST0101] (VirtualService default/reviews) broken (accepted: the subset comes with the next release)',
        'Warning [IST0108] (Service default/web) Unknown annotation (accepted: our own annotation)']
    assert [m['reason'] for m in verdict['messages']] == [accept['IST0101'], accept['IST0108']]
    lines = _analyze.summary(verdict, [])
    assert lines[0] == 'istioctl analyze (all namespaces): 1 error(s), 1 warning(s), 0 info(s)'
    assert lines[1].startswith('accepted: Error [IST0101]')


def test_summary_when_clean():
    verdict = _analyze.judge([], ['istio-system', 'default'], {}, False)
    assert _analyze.summary(verdict, ['istio-system', 'default']) == [
        'istioctl analyze (istio-system, default): no issue found']


@pytest.mark.parametrize('changes, words', [
    ({'accept': {'IST101': 'why'}}, "accept: 'IST101' is not an analyzer message code"),
    ({'accept': {'IST0101': ''}}, 'accept: IST0101 needs a reason'),
    ({'accept': {'IST0101': 3}}, 'accept: IST0101 needs a reason'),
    ({'namespaces': ['Default']}, "namespaces: 'Default' is not a valid namespace name"),
    ({'istio_namespace': ''}, 'istio_namespace'),
    ({'timeout': 0}, 'timeout: must be at least 1'),
])
def test_bad_options_are_named(changes, words):
    problems = _analyze.check_params(params(**changes))
    assert len(problems) == 1 and words in problems[0], problems


def test_good_options_pass():
    assert _analyze.check_params(params(namespaces=['default', 'istio-system'], accept={'IST0102': 'why'})) == []


def test_recorded_fixtures_are_json_lists():
    for path in FIXTURES.glob('*.json'):
        if path.name == 'version.json':
            continue
        assert isinstance(json.loads(path.read_text()) or [], list), path


def test_version():
    assert _analyze.version_command('istioctl') == ['istioctl', 'version', '--remote=false', '--output', 'json']
    assert _analyze.parse_version(recorded('version.json')) == '1.31.0-snapshot.eed52eb'
    assert _analyze.parse_version('client version: 1.30.4') == ''
