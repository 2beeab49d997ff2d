# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE plugin_utils: used only by the action plugins of servicemesh.istio.
"""Run a Kubernetes module of this collection inside the controller.

A module costs a new Python process, the import of the ``kubernetes`` client
and a new connection to the API server: about half a second before it does
anything, paid again at every call. The collection's modules that have an
action plugin (``preflight_info``, ``wait_for_ready``, ``run_lock``, ...) keep
their logic in module_utils, so
when the task runs on the controller itself (``connection: local``, no
become, no async, no task ``environment``, and the controller's own Python
interpreter) their action plugin calls that logic in the worker process that
Ansible has already forked, with the ``kubernetes`` client imported once by
the controller. Anywhere else the action plugin runs the module as usual.
Both ways validate the same argument spec and return the same result; only
the in-process way can print progress while it waits.

``SERVICEMESH_ISTIO_IN_PROCESS=0`` in the controller's environment forces the
module way (the tests use it to check that both ways agree).
"""

from __future__ import annotations

import os
import sys

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s

display = Display()

_OFF = ('0', 'false', 'no', 'off')


def _same_python(interpreter, executable):
    """Whether ``interpreter`` is the controller's Python: the same path, or
    another name for the same binary in the same directory (``python3`` and
    ``python`` of one virtualenv)."""
    first, second = os.path.abspath(interpreter), os.path.abspath(executable)
    if first == second:
        return True
    return os.path.dirname(first) == os.path.dirname(second) and os.path.realpath(first) == os.path.realpath(second)


# The connection options kubernetes.core's modules take, as module_utils/_k8s.py
# mirrors them: each name with its aliases.
_AUTH_NAMES = {name: frozenset([name] + spec.get('aliases', [])) for name, spec in _k8s.AUTH_ARG_SPEC.items()}
_AUTH_KEYS = frozenset().union(*_AUTH_NAMES.values())
# The module_defaults groups of kubernetes.core, as Ansible stores them (fully qualified).
KUBERNETES_CORE_GROUPS = ('group/kubernetes.core.k8s', 'group/kubernetes.core.helm')


def kubernetes_core_connection_defaults(module_defaults, args):
    """The connection options a play or block sets for kubernetes.core's groups
    (``module_defaults: {group/kubernetes.core.k8s: {kubeconfig: ...}}``, the
    habit of kubernetes.core's users), for a module of this collection that
    cannot be a member of another collection's group.

    Only connection options are taken (not, say, ``wait``), only those the task
    does not set itself or through this collection's group (which Ansible has
    already merged into ``args``), later entries of ``module_defaults``
    overriding earlier ones as Ansible does. Values are returned untemplated."""
    given = set(args).union(*(names for names in _AUTH_NAMES.values() if names & set(args)))
    found = {}
    for entry in module_defaults or []:
        if not isinstance(entry, dict):
            continue
        for group in KUBERNETES_CORE_GROUPS:
            values = entry.get(group)
            if isinstance(values, dict):
                found.update((k, v) for k, v in values.items() if k in _AUTH_KEYS and k not in given)
    return found


class KubernetesAction(ActionBase):
    """Base of the action plugins of this collection's modules that talk to the
    Kubernetes API: they take the connection options of kubernetes.core's
    module_defaults groups too, then run the module."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True

    def module_args(self):
        """The task's arguments with the kubernetes.core group defaults it lacks."""
        extra = kubernetes_core_connection_defaults(self._task.module_defaults, self._task.args)
        if not extra:
            return self._task.args
        return dict(self._templar.template(extra), **self._task.args)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        result.update(self._execute_module(module_name=self._task.resolved_action, module_args=self.module_args(),
                                           task_vars=task_vars))
        return result


class InProcessAction(KubernetesAction):
    """Base of the action plugins that may run their module's logic in process."""

    # Set by subclasses.
    ARGUMENT_SPEC: dict = {}
    VALIDATOR_KWARGS: dict = {}
    IMPORT_ERROR: str | None = None

    def in_process(self, params, progress):
        """The module's logic; returns the module's result dict."""
        raise NotImplementedError

    def _in_process_allowed(self, task_vars):
        if os.environ.get('SERVICEMESH_ISTIO_IN_PROCESS', '1').lower() in _OFF or self.IMPORT_ERROR:
            return False
        # mitogen_local: Mitogen's strategy (opt-in, hack/mitogen-env.sh) on the controller itself.
        if getattr(self._connection, 'transport', None) not in ('local', 'mitogen_local'):
            return False
        if self._task.async_val or self._play_context.become or any(self._task.environment or []):
            return False
        interpreter = (task_vars or {}).get('ansible_python_interpreter')
        if interpreter:
            if not _same_python(str(self._templar.template(interpreter)), sys.executable):
                return False
        return True

    def run(self, tmp=None, task_vars=None):
        if not self._in_process_allowed(task_vars):
            return super().run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)
        del tmp
        validation = ArgumentSpecValidator(self.ARGUMENT_SPEC, **self.VALIDATOR_KWARGS).validate(self.module_args())
        if validation.error_messages:
            # The message AnsibleModule gives for the same input: the first error only.
            msg = validation.errors.msg
            if isinstance(validation.errors[0], UnsupportedError):
                msg = 'Unsupported parameters for (%s) module: %s' % (self._task.action, msg)
            for secret in validation._no_log_values:  # pylint: disable=protected-access
                msg = msg.replace(str(secret), '********')
            result.update(failed=True, msg=msg)
            return result
        host = (task_vars or {}).get('inventory_hostname', 'localhost')

        def progress(message):
            display.display('%s: %s' % (host, message), stderr=True)

        result.update(self.in_process(validation.validated_parameters, progress))
        return result
