"""Every role's variables are documented, and the documentation is what its
meta/argument_specs.yml says (issue 3: a page per role listing every variable
with its default)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in REPO_ROOT.glob("roles/*/meta/argument_specs.yml"))


def test_role_pages_are_generated_from_the_argument_specs():
    proc = subprocess.run([REPO_ROOT / ".venv/bin/python", REPO_ROOT / "hack/gen_role_docs.py", "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"run hack/gen_role_docs.py: {proc.stdout}{proc.stderr}"
    for role in ROLES:
        assert (REPO_ROOT / "docs/roles" / f"{role.name}.md").is_file(), role.name


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_and_argument_spec_agree(role):
    defaults_file = role / "defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    entries = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]
    main = entries["main"].get("options", {})
    spec_defaults, computed = {}, {}
    for entry in entries.values():
        spec_defaults.update({k: v.get("default") for k, v in entry.get("options", {}).items()})
        # A bool computed from other variables: antsibull-docs' schema takes no
        # template as a bool default, so the spec names it in the description.
        computed.update({k: v for k, v in entry.get("options", {}).items()
                         if "default" not in v and v.get("type") == "bool" and k in defaults})
    for name, option in computed.items():
        assert "{{" in str(defaults[name]) and "Default:" in option.get("description", ""), \
            f"{role.name}: {name} has no default in the argument spec and its description does not give it"
        spec_defaults[name] = defaults[name]
    undocumented = set(defaults) - set(spec_defaults)
    assert not undocumented, f"{role.name}: defaults without an argument spec: {sorted(undocumented)}"
    missing = {k for k, v in main.items() if "default" in v} - set(defaults)
    assert not missing, f"{role.name}: argument spec defaults missing from defaults/main.yml: {sorted(missing)}"
    differing = {k: (defaults[k], spec_defaults[k]) for k in defaults if defaults[k] != spec_defaults[k]}
    assert not differing, f"{role.name}: defaults differ from the argument spec: {differing}"
    for name in defaults:
        assert name.startswith(role.name + "_"), f"{role.name}: variable {name} is not prefixed with the role name"
