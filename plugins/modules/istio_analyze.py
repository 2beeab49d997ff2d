#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: istio_analyze
short_description: Check the mesh's configuration with Istio's own analyzer (istioctl analyze)
version_added: 0.2.0
description:
  - Runs C(istioctl analyze --all-namespaces --output json) against the cluster and reports the analyzer's messages
    about the objects of O(namespaces) (for example C(IST0101) for a VirtualService routing to a subset no
    DestinationRule defines).
  - Fails when the analyzer reports an error, or a warning with O(fail_on_warnings), whose code O(accept) does not
    accept with a reason; the message names each object and code. Info messages never fail.
  - An independent check of what the roles applied, made by Istio's code rather than this collection's.
  - When C(istioctl) cannot be found the task is skipped and says so, unless O(required) is set.
  - The module only reads; it never reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - servicemesh.istio.connection
author:
  - servicemesh.istio contributors (@servicemesh-istio)
requirements:
  - C(istioctl) on the host that runs the module, ideally of the version of the cluster's istiod.
options:
  istioctl:
    description: Name (looked up on C(PATH)) or path of the C(istioctl) binary.
    type: str
    default: istioctl
  required:
    description:
      - Fail when O(istioctl) cannot be found. By default the task is skipped with a message instead.
    type: bool
    default: false
  namespaces:
    description:
      - Report only messages about objects in these namespaces, about these Namespace objects, and about
        cluster-scoped objects (such as webhook configurations). Empty means every namespace.
      - The analyzer always reads the whole cluster; this only chooses which of its messages count.
    type: list
    elements: str
    default: []
  istio_namespace:
    description: Namespace of the Istio control plane (C(istioctl --istioNamespace)).
    type: str
    default: istio-system
  revision:
    description: Control plane revision whose mesh config and injector the analysis uses (C(istioctl analyze
      --revision)); empty for the default revision.
    type: str
    default: ''
  accept:
    description:
      - 'Message codes that do not fail the task, each with the reason it is accepted, for example
        C({IST0103: "the batch jobs run without a sidecar on purpose"}). Accepted messages are still reported,
        with their reason.'
      - Each key must be a code (C(IST) and four digits) and each reason a non-empty string.
    type: dict
    default: {}
  fail_on_warnings:
    description: Fail on warnings as well as on errors (unless accepted).
    type: bool
    default: false
  timeout:
    description: Seconds the analysis may take (C(istioctl analyze --timeout)).
    type: int
    default: 60
  kubeconfig:
    description:
      - Path to a kubeconfig file, or the kubeconfig itself as a dictionary. Defaults to C(K8S_AUTH_KUBECONFIG),
        then to istioctl's own default (C(KUBECONFIG), C(~/.kube/config)).
      - The same option as in kubernetes.core's modules, so that C(module_defaults) for the action group
        C(servicemesh.istio.kubernetes) sets it.
    type: raw
  context:
    description: Context of the kubeconfig to use. Defaults to C(K8S_AUTH_CONTEXT), then the current context.
    type: str
notes:
  - One analysis of the whole cluster runs, however many namespaces are given.
  - Only the kubeconfig and context options of kubernetes.core are supported, since istioctl reads its credentials
    from a kubeconfig.
seealso:
  - name: istioctl analyze
    description: Istio's documentation of the analyzer and its messages.
    link: https://istio.io/latest/docs/reference/config/analysis/
"""

EXAMPLES = r"""
- name: Analyze what the play touched; fail on errors
  servicemesh.istio.istio_analyze:
    namespaces: [istio-system, default]
  register: analysis

- name: Show what the analyzer found
  ansible.builtin.debug:
    msg: "{{ analysis.summary }}"

- name: Fail on warnings too, accepting one code with the reason
  servicemesh.istio.istio_analyze:
    istioctl: /opt/istio-1.30.4/bin/istioctl
    required: true
    namespaces: [bookinfo]
    fail_on_warnings: true
    accept:
      IST0103: the batch jobs of this namespace run without a sidecar on purpose
"""

RETURN = r"""
ran:
  description: Whether the analysis ran (false when O(istioctl) was not found and O(required) is false).
  returned: always
  type: bool
  sample: true
istioctl:
  description: The binary run.
  returned: when found
  type: str
  sample: /usr/local/bin/istioctl
istioctl_version:
  description: Its client version (C(istioctl version --remote=false --output json)); empty when it could not be read.
  returned: when the analysis ran
  type: str
  sample: 1.31.0-snapshot.eed52eb
command:
  description: The analysis command line (a kubeconfig given as a dictionary shows as a temporary file).
  returned: when the analysis ran
  type: list
  elements: str
  sample: [istioctl, analyze, --all-namespaces, --output, json, --color=false, --istioNamespace, istio-system,
           --timeout, 60s]
namespaces:
  description: The namespaces the messages were kept for (empty for all).
  returned: always
  type: list
  elements: str
  sample: [istio-system, default]
messages:
  description: The analyzer's messages in scope, sorted as istioctl sorts them.
  returned: when the analysis ran
  type: list
  elements: dict
  contains:
    code:
      description: Message code.
      type: str
      sample: IST0101
    level:
      description: C(Error), C(Warning) or C(Info).
      type: str
    origin:
      description: The object as istioctl names it, C(<Kind> <namespace>/<name>) or C(<Kind> <name>).
      type: str
      sample: VirtualService default/reviews
    kind:
      description: Its kind.
      type: str
    namespace:
      description: Its namespace (empty for a cluster-scoped object).
      type: str
    name:
      description: Its name.
      type: str
    message:
      description: What the analyzer says.
      type: str
      sample: 'Referenced host+subset in destinationrule not found: "reviews+v9"'
    documentation_url:
      description: Istio's page on this code.
      type: str
    accepted:
      description: Whether O(accept) accepts it (errors and warnings only).
      type: bool
    reason:
      description: The reason given in O(accept) (empty when not accepted).
      type: str
    failing:
      description: Whether it fails the task.
      type: bool
counts:
  description: Number of messages in scope per level.
  returned: when the analysis ran
  type: dict
  sample: {error: 0, warning: 1, info: 2}
failing:
  description: The messages that fail the task, one line each as istioctl prints them.
  returned: when the analysis ran
  type: list
  elements: str
  sample: ['Error [IST0101] (VirtualService default/reviews) Referenced host+subset in destinationrule not found:
           "reviews+v9"']
accepted:
  description: Accepted errors and warnings, each with its reason.
  returned: when the analysis ran
  type: list
  elements: str
warnings_reported:
  description: Warnings that do not fail the task (O(fail_on_warnings) is false); they are also emitted as
    Ansible warnings.
  returned: when the analysis ran
  type: list
  elements: str
out_of_scope:
  description: Number of messages about objects outside O(namespaces), not reported.
  returned: when the analysis ran
  type: int
  sample: 3
summary:
  description: A report for people, one line each; the first says where and how many.
  returned: always
  type: list
  elements: str
  sample: ['istioctl analyze (istio-system, default): no issue found']
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.servicemesh.istio.plugins.module_utils import _analyze


def _find_istioctl(module):
    name = module.params['istioctl']
    if '/' in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return module.get_bin_path(name)


def main():
    module = AnsibleModule(argument_spec=_analyze.ARGUMENT_SPEC, supports_check_mode=True)
    params = dict(module.params)
    for option, variable in _analyze.ENV_FALLBACKS.items():
        if params.get(option) in (None, '') and os.environ.get(variable):
            params[option] = os.environ[variable]
    namespaces = list(params['namespaces'])
    result = dict(changed=False, ran=False, namespaces=namespaces)

    problems = _analyze.check_params(params)
    if problems:
        module.fail_json(msg='; '.join(problems), **result)

    binary = _find_istioctl(module)
    if binary is None:
        text = ('istioctl (%s) was not found on the PATH of the host running the task: the configuration was not '
                'analyzed' % params['istioctl'])
        if params['required']:
            module.fail_json(msg=text + ' (required is set)', **result)
        module.exit_json(skipped=True, msg=text, summary=[text], **result)
    result['istioctl'] = binary

    kubeconfig = params.get('kubeconfig')
    kubeconfig_file = None
    try:
        if isinstance(kubeconfig, dict):
            fd, kubeconfig_file = tempfile.mkstemp(prefix='istio_analyze-', suffix='.kubeconfig')
            with os.fdopen(fd, 'w') as handle:
                json.dump(kubeconfig, handle)
            kubeconfig = kubeconfig_file
        elif kubeconfig in (None, ''):
            kubeconfig = None

        rc, out, err = module.run_command(_analyze.version_command(binary))
        result['istioctl_version'] = _analyze.parse_version(out) if rc == 0 else ''

        argv = _analyze.analyze_command(binary, params, kubeconfig)
        result['command'] = argv
        rc, out, err = module.run_command(argv)
    finally:
        if kubeconfig_file:
            os.unlink(kubeconfig_file)
    if rc != 0:
        module.fail_json(msg='istioctl analyze failed (exit code %d): %s' % (rc, (err or out).strip()[-2000:]),
                         rc=rc, stdout=out, stderr=err, **result)
    try:
        messages = _analyze.parse_messages(out)
    except ValueError as exc:
        module.fail_json(msg='could not read the output of istioctl analyze: %s' % exc, stderr=err, **result)

    result['ran'] = True
    verdict = _analyze.judge(messages, namespaces, params['accept'], params['fail_on_warnings'])
    result.update(verdict)
    result['summary'] = _analyze.summary(verdict, namespaces)
    if verdict['failing']:
        module.fail_json(msg=_analyze.failure_message(verdict, namespaces), **result)
    for text in verdict['warnings_reported']:
        module.warn('istioctl analyze: %s' % text)
    result['msg'] = result['summary'][0]
    module.exit_json(**result)


if __name__ == '__main__':
    main()
