# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's choice of parts by the run's tags (plugins/filter/site.py): the
roles whose inputs the preflight checks and the namespaces the analyzer reads."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.servicemesh.istio.plugins.filter.site import selected_by_tags

PARTS = [
    {"role": "istio_install", "tags": ["istio"]},
    {"role": "bookinfo", "tags": ["bookinfo"]},
    {"role": "mtls_verify", "tags": ["mtls"]},
    {"role": "ingress_tls", "tags": ["ingress", "tls"]},
]


def roles(run, skip=()):
    return [p["role"] for p in selected_by_tags(PARTS, list(run), list(skip))]


@pytest.mark.parametrize("run,skip,expected", [
    (["all"], [], ["istio_install", "bookinfo", "mtls_verify", "ingress_tls"]),
    (["tls"], [], ["ingress_tls"]),
    (["ingress"], [], ["ingress_tls"]),
    (["bookinfo", "istio"], [], ["istio_install", "bookinfo"]),
    (["all"], ["mtls"], ["istio_install", "bookinfo", "ingress_tls"]),
    # A part is skipped when any of its tags is skipped, as Ansible skips a task.
    (["all"], ["tls"], ["istio_install", "bookinfo", "mtls_verify"]),
    (["tls"], ["ingress"], []),
    (["never-heard-of"], [], []),
    (["always"], [], []),
])
def test_selection_follows_ansible_tag_rules(run, skip, expected):
    assert roles(run, skip) == expected


def test_entries_come_back_whole_and_in_order():
    parts = [{"tags": ["b"], "namespaces": ["x"]}, {"tags": ["a"], "namespaces": ["y", "x"]}]
    assert selected_by_tags(parts, ["a", "b"], []) == parts


def test_skip_tags_may_be_omitted():
    assert [p["role"] for p in selected_by_tags(PARTS, ["istio"])] == ["istio_install"]


@pytest.mark.parametrize("parts,run,message", [
    ("istio", ["all"], "expects a list"),
    ([{"role": "x"}], ["all"], 'needs a list "tags"'),
    ([{"role": "x", "tags": "istio"}], ["all"], 'needs a list "tags"'),
    (PARTS, "all", "run_tags must be a list"),
])
def test_malformed_input_is_named(parts, run, message):
    with pytest.raises(AnsibleFilterError, match=message):
        selected_by_tags(parts, run, [])
