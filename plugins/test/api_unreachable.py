# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a task failed because the Kubernetes API server did not answer."""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.servicemesh.istio.plugins.module_utils._k8s import transient_api_error


def api_unreachable(result):
    """True when ``result`` (a registered task result, a loop's included) failed
    because the API server did not answer: worth another try."""
    if not isinstance(result, Mapping) or not result.get('failed'):
        return False
    if not result.get('msg') and result.get('exception') and not result.get('results'):
        # ansible-core 2.19 evaluates `until` before it normalises a task's
        # error: a module's fail_json(msg=..., exception=...) reaches `until`
        # as the exception alone, its message not visible yet. kubernetes.core
        # fails that way when its client cannot connect (CoreException, the
        # refused connection of an API server that is down); an error the API
        # server answered comes with its message, and is judged by it.
        return True
    texts = [result.get(key) for key in ('msg', 'error', 'exception', 'module_stderr')]
    texts += [item.get('msg') for item in result.get('results') or [] if isinstance(item, Mapping) and item.get('failed')]
    return bool(transient_api_error('\n'.join(str(text) for text in texts if text)))


class TestModule:  # pylint: disable=too-few-public-methods
    """servicemesh.istio tests."""

    def tests(self):
        return {'api_unreachable': api_unreachable}
