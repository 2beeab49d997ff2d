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
      - Pause after the first unsuccessful attempt, in seconds. Each further pause is O(backoff_factor) times longer,
        up to O(max_sleep).
    type: float
    default: 1
  max_sleep:
    description:
      - Longest pause between two attempts, in seconds.
    type: float
    default: 10
  backoff_factor:
    description:
      - How much longer each pause is than the one before (at least V(1); V(1) polls every O(initial_sleep) seconds).
      - A factor below 2 with a short O(initial_sleep) notices a quick change sooner, for example V(0.25) and V(1.25)
        poll at 0, 0.25, 0.56, 0.95, 1.44 and 2.05 seconds.
    type: float
    default: 2
'''
