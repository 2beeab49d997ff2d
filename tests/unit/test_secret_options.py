# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every option that looks like a secret is marked no_log in its argument
spec: the roles' meta/argument_specs.yml (the validation that runs before any
task prints it) and every module's argument spec, suboptions included.

Options are found by name, so a new role or module is checked without
changing this file; an option whose name only looks like a secret (the name
of a Kubernetes Secret, a path to a key file) must be listed below with why.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE_SPECS = sorted(REPO_ROOT.glob("roles/*/meta/argument_specs.yml"))
MODULES = sorted(p.stem for p in (REPO_ROOT / "plugins/modules").glob("*.py") if not p.name.startswith("_"))

SECRET_WORDS = re.compile(r"secret|password|passwd|token|credential|private|api_key|tsig_key$|(^|_)key$|(^|_)auth$")
# Names that hold a reference to a secret, or a setting about it, not the secret itself.
NOT_A_SECRET = re.compile(r"_(name|names|namespace|ref|file|path|algorithm|type|mode)$")
ALLOWED = {
    # (where, option): why it is not a secret
    ("wait_for_certificate", "secret"): "the name of a Kubernetes Secret to read",
    ("wait_for_certificate", "client_key"): "a path to a key file (kubernetes.core's spec: no_log False)",
    ("wait_for_ready", "client_key"): "a path to a key file (kubernetes.core's spec: no_log False)",
    ("preflight_info", "client_key"): "a path to a key file (kubernetes.core's spec: no_log False)",
    ("proxy_config_info", "client_key"): "a path to a key file (kubernetes.core's spec: no_log False)",
    ("service_proxy_request", "client_key"): "a path to a key file (kubernetes.core's spec: no_log False)",
    ("run_lock", "client_key"): "a path to a key file (kubernetes.core's spec: no_log False)",
}


def looks_secret(name: str) -> bool:
    return bool(SECRET_WORDS.search(name)) and not NOT_A_SECRET.search(name)


def walk(options: dict, prefix: str = ""):
    """(dotted name, spec) for every option and suboption."""
    for name, spec in (options or {}).items():
        spec = spec or {}
        yield prefix + name, spec
        yield from walk(spec.get("options") or spec.get("suboptions") or {}, f"{prefix}{name}.")


def unmarked(where: str, options: dict) -> list[str]:
    return [name for name, spec in walk(options)
            if looks_secret(name.rsplit(".", 1)[-1]) and not spec.get("no_log")
            and (where, name) not in ALLOWED]


def module_argument_spec(name: str) -> dict:
    """The argument spec a module's main() gives AnsibleModule, captured there."""
    module = importlib.import_module(f"ansible_collections.servicemesh.istio.plugins.modules.{name}")
    captured = {}

    class Captured(Exception):
        pass

    class FakeAnsibleModule:
        def __init__(self, argument_spec, **kwargs):
            del kwargs
            captured.update(argument_spec)
            raise Captured

    real = module.AnsibleModule
    module.AnsibleModule = FakeAnsibleModule
    try:
        with pytest.raises(Captured):
            module.main()
    finally:
        module.AnsibleModule = real
    return captured


@pytest.mark.parametrize("spec_file", ROLE_SPECS, ids=[p.parent.parent.name for p in ROLE_SPECS])
def test_role_secret_options_are_no_log(spec_file):
    entries = yaml.safe_load(spec_file.read_text())["argument_specs"]
    role = spec_file.parent.parent.name
    missing = {entry: unmarked(role, spec.get("options", {})) for entry, spec in entries.items()}
    assert not any(missing.values()), f"{role}: secret-looking options without no_log: true: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_module_secret_options_are_no_log(name):
    spec = module_argument_spec(name)
    assert spec, f"{name}: no argument spec captured"
    assert unmarked(name, spec) == [], f"{name}: secret-looking options without no_log=True"


def test_the_check_finds_what_it_must():
    """The name test is not vacuous: the collection's real secrets are caught
    by it, and would be reported without their no_log."""
    for name in ("ingress_tls_dns_tsig_key_secret", "ingress_tls_dns01_rfc2136_tsig_secret",
                 "ingress_tls_dns01_secret_data", "api_key", "password", "proxy_basic_auth", "key_secret"):
        assert looks_secret(name), name
    for name in ("ingress_tls_secret_name", "ingress_tls_dns_tsig_key_name", "ingress_tls_dns_tsig_algorithm",
                 "ingress_tls_dns01_secret_name", "ingress_tls_certificate_name"):
        assert not looks_secret(name), name
    assert unmarked("x", {"tsig": {"type": "dict", "options": {"key_secret": {"type": "str"}}}}) == ["tsig.key_secret"]
    assert unmarked("x", {"tsig": {"type": "dict", "options": {"key_secret": {"type": "str", "no_log": True}}}}) == []
    roles = {p.parent.parent.name: yaml.safe_load(p.read_text())["argument_specs"] for p in ROLE_SPECS}
    found = [name for entry in roles["ingress_tls"].values() for name, dummy in walk(entry.get("options", {}))
             if looks_secret(name)]
    assert {"ingress_tls_dns_tsig_key_secret", "ingress_tls_dns01_rfc2136_tsig_secret",
            "ingress_tls_dns01_secret_data"} <= set(found), found
