# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Options shared by the collection's wait-until modules."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The timeout and back-off options of servicemesh.istio's wait modules."""

    DOCUMENTATION = r'''
options:
  timeout:
    description:
      - How long to wait, in seconds, before failing. The last attempt is made at the deadline at the latest.
      - V(0) makes a single attempt.
    type: float
    default: 300
  initial_sleep:
    description:
      - Pause after the first unsuccessful attempt, in seconds. Each further pause doubles, up to O(max_sleep).
    type: float
    default: 1
  max_sleep:
    description:
      - Longest pause between two attempts, in seconds.
    type: float
    default: 10
'''
