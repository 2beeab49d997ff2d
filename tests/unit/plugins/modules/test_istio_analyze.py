# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""istio_analyze run in-process against a stand-in istioctl: a script that
replays output recorded from the test cluster's real istioctl
(tests/unit/plugins/fixtures/istio_analyze/) and writes down how it was called.
The real istioctl against the real cluster: tests/cluster/test_site_istio_bookinfo.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.servicemesh.istio.plugins.modules import istio_analyze

FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures' / 'istio_analyze'

SCRIPT = """#!/bin/sh
# Stand-in istioctl written by test_istio_analyze.py.
if [ "$1" = version ]; then cat "{version}"; exit 0; fi
printf '%s\\n' "$@" > "{calls}"
for arg in "$@"; do
  case "$arg" in
    --kubeconfig) next=kc ;;
    *) if [ "${{next:-}}" = kc ]; then cat "$arg" > "{calls}.kubeconfig"; next=; fi ;;
  esac
done
cat "{output}"
echo "{stderr}" >&2
exit {rc}
"""


@pytest.fixture
def istioctl(tmp_path):
    """``istioctl(fixture_name, rc=0, stderr='') -> path`` of a stand-in binary; ``.calls`` has its argv."""

    def _make(fixture, rc=0, stderr=''):
        binary = tmp_path / 'bin' / 'istioctl'
        binary.parent.mkdir(exist_ok=True)
        binary.write_text(SCRIPT.format(calls=tmp_path / 'calls', output=FIXTURES / fixture, stderr=stderr, rc=rc,
                                        version=FIXTURES / 'version.json'))
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
        return binary

    return _make


def calls(tmp_path):
    return (tmp_path / 'calls').read_text().splitlines()


def test_clean_cluster_passes_and_reports(istioctl, run_module, tmp_path):
    binary = istioctl('converged.json')
    result = run_module(istio_analyze.main, {'istioctl': str(binary), 'namespaces': ['istio-system', 'default'],
                                             'kubeconfig': '/k/config', 'context': 'smistio'})
    assert not result.failed, result['msg']
    assert result['changed'] is False and result['ran'] is True
    assert result['istioctl'] == str(binary) and result['istioctl_version'] == '1.31.0-snapshot.eed52eb'
    assert result['counts']['error'] == result['counts']['warning'] == 0
    assert result['failing'] == [] and result['summary'][0].startswith('istioctl analyze (istio-system, default)')
    argv = calls(tmp_path)
    assert argv[:5] == ['analyze', '--all-namespaces', '--output', 'json', '--color=false']
    assert argv[argv.index('--kubeconfig') + 1] == '/k/config' and argv[argv.index('--context') + 1] == 'smistio'


def test_error_fails_naming_object_and_code(istioctl, run_module):
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('ist0101.json')), 'namespaces': ['default']})
    assert result.failed
    assert 'istioctl analyze found 1 error(s) in default' in result['msg']
    assert 'Error [IST0101] (VirtualService default/reviews-broken)' in result['msg']
    assert 'reviews+v9' in result['msg']
    assert [m['code'] for m in result['messages'] if m['failing']] == ['IST0101']


def test_error_outside_the_namespaces_is_not_counted(istioctl, run_module):
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('ist0101.json')), 'namespaces': ['istio-system']})
    assert not result.failed, result['msg']
    assert result['out_of_scope'] >= 1 and result['counts']['error'] == 0


def test_accepted_error_passes_with_its_reason(istioctl, run_module):
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('ist0101.json')), 'namespaces': ['default'],
                                             'accept': {'IST0101': 'v9 is deployed next week'}})
    assert not result.failed, result['msg']
    assert result['accepted'] == [
        'Error [IST0101] (VirtualService default/reviews-broken) Referenced host+subset in destinationrule not found: '
        '"reviews+v9" (accepted: v9 is deployed next week)']


def test_warning_is_reported_and_fails_only_when_asked(istioctl, run_module):
    binary = str(istioctl('ist0108.json'))
    result = run_module(istio_analyze.main, {'istioctl': binary, 'namespaces': ['default']})
    assert not result.failed, result['msg']
    assert [w for w in result['warnings_reported'] if '[IST0108] (Service default/smistio-annotated)' in w]
    # ... and emitted as an Ansible warning.
    assert 'istioctl analyze: Warning [IST0108] (Service default/smistio-annotated)' in json.dumps(result['warnings'])
    strict = run_module(istio_analyze.main, {'istioctl': binary, 'namespaces': ['default'], 'fail_on_warnings': True})
    assert strict.failed and 'warning(s) (fail_on_warnings is set)' in strict['msg'] and '[IST0108]' in strict['msg']


def test_check_mode_runs_the_same_analysis(istioctl, run_module):
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('ist0101.json')), 'namespaces': ['default']},
                        check_mode=True)
    assert result.failed and 'IST0101' in result['msg']


def test_missing_istioctl_skips_unless_required(run_module, tmp_path):
    absent = str(tmp_path / 'nowhere' / 'istioctl')
    result = run_module(istio_analyze.main, {'istioctl': absent})
    assert not result.failed and result['skipped'] is True and result['ran'] is False
    assert 'was not found' in result['msg'] and result['summary'] == [result['msg']]
    required = run_module(istio_analyze.main, {'istioctl': absent, 'required': True})
    assert required.failed and 'required is set' in required['msg']


def test_kubeconfig_as_a_dict_goes_through_a_file_that_is_removed(istioctl, run_module, tmp_path):
    config = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'x'}
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('converged.json')), 'kubeconfig': config})
    assert not result.failed, result['msg']
    argv = calls(tmp_path)
    path = argv[argv.index('--kubeconfig') + 1]
    assert json.loads((tmp_path / 'calls.kubeconfig').read_text()) == config
    assert not os.path.exists(path)


def test_kubeconfig_from_the_environment(istioctl, run_module, tmp_path, monkeypatch):
    monkeypatch.setenv('K8S_AUTH_KUBECONFIG', '/env/kubeconfig')
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('converged.json'))})
    assert not result.failed, result['msg']
    argv = calls(tmp_path)
    assert argv[argv.index('--kubeconfig') + 1] == '/env/kubeconfig'


def test_istioctl_failure_is_reported(istioctl, run_module):
    binary = istioctl('converged.json', rc=1, stderr='Error: no such host')
    result = run_module(istio_analyze.main, {'istioctl': str(binary)})
    assert result.failed and 'istioctl analyze failed (exit code 1)' in result['msg'] and 'no such host' in result['msg']


def test_bad_options_fail_before_istioctl_runs(istioctl, run_module, tmp_path):
    result = run_module(istio_analyze.main, {'istioctl': str(istioctl('converged.json')),
                                             'accept': {'IST0101': ' '}, 'namespaces': ['Bad_NS']})
    assert result.failed
    assert 'accept: IST0101 needs a reason' in result['msg'] and "namespaces: 'Bad_NS'" in result['msg']
    assert not (tmp_path / 'calls').exists()
