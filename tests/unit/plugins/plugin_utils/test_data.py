"""The filters' helpers for API objects and Ansible's tagged values."""

from __future__ import annotations

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader

from ansible_collections.servicemesh.istio.plugins.plugin_utils._data import as_dict, as_list, plain


def test_absent_and_null_fields_read_as_empty():
    assert as_dict(None) == {} and as_dict([1]) == {} and as_dict({'a': 1}) == {'a': 1}
    assert as_list(None) == [] and as_list({'a': 1}) == [] and as_list([1]) == [1]


def test_tagged_values_become_plain_python_that_yaml_safe_dump_accepts():
    # What Ansible's loader gives: containers and strings tagged with their origin.
    tagged = DataLoader().load('name: web\nports: [80, 443]\n"on": true\nratio: 0.5\nnone: null\n')
    with pytest.raises(yaml.representer.RepresenterError):
        yaml.safe_dump(tagged)
    out = plain(dict(tagged, pair=('a', 1)))
    assert out == {'name': 'web', 'ports': [80, 443], 'on': True, 'ratio': 0.5, 'none': None, 'pair': ['a', 1]}
    assert yaml.safe_load(yaml.safe_dump(out)) == out
