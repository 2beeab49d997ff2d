# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE plugin_utils: used only by the controller-side plugins of servicemesh.istio.
"""Reading API objects and Ansible values in the filter plugins: fields that
may be absent or null, and Ansible's tagged values as plain Python."""

from __future__ import annotations

from collections.abc import Mapping


def as_dict(value):
    """``value`` if it is a mapping, else an empty dict (absent and null fields alike)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value):
    """``value`` if it is a list, else an empty list (absent and null fields alike)."""
    return value if isinstance(value, list) else []


def plain(value):
    """Ansible's tagged strings, mappings and lists (ansible-core 2.19's data
    tagging) as plain Python values, for code that checks exact types, such as
    yaml.safe_dump, which cannot represent the tagged ones."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value
