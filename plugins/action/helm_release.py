# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of servicemesh.istio.helm_release: kubernetes.core.helm, run
again on a transient API error and after clearing a release an interrupted
install left pending-install (module_utils/_helm.py)."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.servicemesh.istio.plugins.module_utils import _helm
from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import KubernetesAction

display = Display()


class ActionModule(KubernetesAction):
    """Converge one Helm release with kubernetes.core.helm and helm_info, riding out API outages."""

    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = ActionBase.run(self, tmp, task_vars)
        del tmp
        validation = ArgumentSpecValidator(_helm.HELM_RELEASE_SPEC).validate(self.module_args())
        if validation.error_messages:
            result.update(failed=True, msg=validation.errors.msg)
            return result
        host = (task_vars or {}).get('inventory_hostname', 'localhost')

        def run_module(name, args):
            return self._execute_module(module_name=name, module_args=args, task_vars=task_vars)

        def progress(message):
            display.display('%s: %s' % (host, message), stderr=True)

        result.update(_helm.converge_release(validation.validated_parameters, run_module, progress,
                                             check_mode=bool(self._play_context.check_mode)))
        return result
