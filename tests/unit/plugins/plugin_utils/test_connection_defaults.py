"""Which connection options the action plugins take from kubernetes.core's
module_defaults groups: connection options only, never over what the task
or this collection's group set (Ansible merged those into the task's args),
later entries of module_defaults winning as in Ansible. The same options run
against the test cluster: tests/cluster/test_connection_groups.py."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.plugin_utils._in_process import (
    kubernetes_core_connection_defaults as defaults,
)


def test_only_connection_options_of_kubernetes_cores_groups_are_taken():
    module_defaults = [{
        "group/kubernetes.core.k8s": {"kubeconfig": "/k", "context": "c", "wait": True, "namespace": "x"},
        "group/kubernetes.core.helm": {"api_key": "{{ token }}", "atomic": True},
        "group/community.general.something": {"host": "https://elsewhere"},
        "kubernetes.core.k8s_info": {"host": "https://only-for-k8s_info"},
    }]
    assert defaults(module_defaults, {}) == {"kubeconfig": "/k", "context": "c", "api_key": "{{ token }}"}


def test_the_tasks_own_options_and_their_aliases_win():
    module_defaults = [{"group/kubernetes.core.k8s": {"kubeconfig": "/k", "validate_certs": False,
                                                      "ca_cert": "/ca", "context": "c"}}]
    args = {"kubeconfig": "/mine", "verify_ssl": True, "ssl_ca_cert": "/my-ca"}
    assert defaults(module_defaults, args) == {"context": "c"}


def test_later_entries_win_and_nothing_is_invented():
    module_defaults = [{"group/kubernetes.core.k8s": {"kubeconfig": "/outer", "context": "outer"}},
                       {"group/kubernetes.core.k8s": {"kubeconfig": "/inner"}}]
    assert defaults(module_defaults, {}) == {"kubeconfig": "/inner", "context": "outer"}
    assert defaults([], {}) == {} and defaults(None, {}) == {}
    assert defaults([{"group/kubernetes.core.k8s": None}, "not a dict"], {}) == {}
