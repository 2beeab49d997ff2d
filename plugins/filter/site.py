# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which parts of site.yml a run's tags select."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def _tags(value, what):
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise AnsibleFilterError('selected_by_tags: %s must be a list of tags, got %r' % (what, value))
    return list(value)


def selected_by_tags(parts, run_tags, skip_tags=None):
    """The entries of ``parts`` (mappings with a list ``tags``) that a play
    with these ``--tags``/``--skip-tags`` runs: one of its tags is asked for
    (or ``all`` is), and none of its tags is skipped. Order is kept."""
    if not isinstance(parts, list):
        raise AnsibleFilterError('selected_by_tags expects a list of mappings with tags, got %s'
                                 % type(parts).__name__)
    run = set(_tags(run_tags, 'run_tags'))
    skip = set(_tags(skip_tags, 'skip_tags'))
    selected = []
    for part in parts:
        if not isinstance(part, Mapping) or not isinstance(part.get('tags'), list):
            raise AnsibleFilterError('selected_by_tags: each entry needs a list "tags", got %r' % (part,))
        tags = set(part['tags'])
        if (tags & run or 'all' in run) and not tags & skip:
            selected.append(part)
    return selected


class FilterModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio filters for site.yml."""

    def filters(self):
        return {'selected_by_tags': selected_by_tags}
