# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What servicemesh.istio's Kubernetes modules share: their attributes and where their connection options come from."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The attributes shared by the modules that talk to the Kubernetes API, and their connection options."""

    DOCUMENTATION = r'''
attributes:
  action:
    support: full
    details:
      - The action plugin adds the connection options of kubernetes.core's C(module_defaults) groups, then runs the
        module, or runs its logic in the controller's process where the module says so.
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: full
    membership:
      - servicemesh.istio.checks
      - servicemesh.istio.kubernetes
  async:
    support: full
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - The module only reads and behaves the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - "The connection options (O(kubeconfig), O(context) and the others of kubernetes.core) come, first to last:
    from the task itself; from C(module_defaults) for this module or for the action group
    C(group/servicemesh.istio.kubernetes) (which also holds kubernetes.core's modules); from C(module_defaults) for
    kubernetes.core's own groups C(group/kubernetes.core.k8s) and C(group/kubernetes.core.helm) (the module's action
    plugin reads those, since a module cannot be a member of another collection's group; only connection options
    are taken from them); then from the C(K8S_AUTH_*) environment variables as in kubernetes.core."
'''
