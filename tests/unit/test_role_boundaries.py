# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles do not read each other's variables, and the shared variables are
documented in one place (issue 12).

- No file of a role (tasks, handlers, templates, defaults, vars, meta) names a
  variable prefixed with another role's name (``bookinfo_namespace`` in
  ingress_tls), internal ones (``__bookinfo_*``) included. A value several
  roles need is a shared ``servicemesh_istio_*`` variable instead. The
  exceptions are listed below with their reason, and an exception no longer
  needed fails too, so the list stays true. Playbooks are not roles: they may
  pass one role's values to another.
- Every ``servicemesh_istio_*`` variable used in roles/ or playbooks/ is in a
  table of docs/variables.md, and every one documented there is used.
- Each role variable whose default is a shared variable is named in that
  variable's "Used by" cell, and each role that names a shared variable
  anywhere else appears in that cell.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO_ROOT / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())
ROLE_PARTS = ("tasks", "handlers", "templates", "defaults", "vars", "meta")
VARIABLES_DOC = REPO_ROOT / "docs/variables.md"

# (role, variable of another role): why the role may name it.
EXCEPTIONS = {
    ("istio_install", "preflight_cluster"): (
        "the fact the preflight role sets (Kubernetes version, Ready nodes); istio_install includes that role "
        "itself when the fact is missing (tasks/preflight.yml), so the dependency is explicit"),
    ("bookinfo", "istio_install_result"): (
        "the fact istio_install sets after installing (documented in its argument spec): tells that Istio was "
        "installed earlier in this run, so the role skips its own lookup; without it the role looks at the cluster"),
    ("mtls_verify", "istio_install_result"): (
        "the same fact: in check mode, Istio installed earlier in this run has no CRD yet, which is then no error"),
    ("ingress_tls", "istio_install_result"): (
        "the same fact: in check mode, Istio installed earlier in this run has no gateway Service yet"),
}

# A role-prefixed name not preceded by a word character or a dot (so not
# servicemesh.istio.preflight_info, a module), with the internal prefix __.
ROLE_VARIABLE = re.compile(r"(?<![\w.])(?:__)?(?P<role>%s)_[a-z0-9_]+" % "|".join(map(re.escape, ROLES)))
SHARED_VARIABLE = re.compile(r"(?<![\w.])servicemesh_istio_[a-z0-9_]+")
TABLE_ROW = re.compile(r"^\| `(servicemesh_istio_[a-z0-9_]+)` \|(?P<cells>.*)\|\s*$")


def role_files(role: str):
    for part in ROLE_PARTS:
        base = ROLES_DIR / role / part
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*") if p.is_file())


def references(pattern: re.Pattern, files) -> dict[str, list[str]]:
    """Each name the pattern finds, with the file:line places it is named."""
    found: dict[str, list[str]] = {}
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                found.setdefault(match.group(0), []).append(f"{path.relative_to(REPO_ROOT)}:{number}")
    return found


def documented() -> dict[str, str]:
    """Shared variable -> its "Used by" cell, from the tables of docs/variables.md
    whose columns are Variable, Default, Used by, What it means."""
    rows = {}
    for line in VARIABLES_DOC.read_text().splitlines():
        match = TABLE_ROW.match(line)
        cells = [c.strip() for c in match.group("cells").split(" | ")] if match else []
        if len(cells) == 3:
            assert match.group(1) not in rows, f"docs/variables.md documents {match.group(1)} twice"
            rows[match.group(1)] = cells[1]
    return rows


def test_the_roles_are_found():
    assert {"preflight", "istio_install", "bookinfo", "mtls_verify", "ingress_tls"} <= set(ROLES), ROLES


@pytest.mark.parametrize("role", ROLES)
def test_a_role_names_no_variable_of_another_role(role):
    found = references(ROLE_VARIABLE, role_files(role))
    foreign = {name: places for name, places in found.items()
               if ROLE_VARIABLE.match(name).group("role") != role}
    unexplained = {name: places for name, places in foreign.items() if (role, name) not in EXCEPTIONS}
    assert not unexplained, (
        f"roles/{role} names variables of other roles: {unexplained}. Use (or add) a servicemesh_istio_* "
        "variable documented in docs/variables.md, with the role's own variable defaulting to it.")
    stale = sorted(name for (owner, name) in EXCEPTIONS if owner == role and name not in foreign)
    assert not stale, f"exceptions for roles/{role} that are no longer needed (remove them): {stale}"


def test_the_exceptions_name_a_role_and_another_roles_variable():
    for (role, name), reason in EXCEPTIONS.items():
        assert role in ROLES and reason, (role, name)
        match = ROLE_VARIABLE.fullmatch(name)
        assert match and match.group("role") != role, (role, name)


def test_every_shared_variable_used_is_documented_and_every_documented_one_used():
    files = [p for d in ("roles", "playbooks") for p in sorted((REPO_ROOT / d).rglob("*")) if p.is_file()]
    used = references(SHARED_VARIABLE, files)
    docs = documented()
    missing = {name: places for name, places in used.items() if name not in docs}
    assert not missing, f"servicemesh_istio_* variables not documented in docs/variables.md: {missing}"
    inventories = references(SHARED_VARIABLE, [p for p in sorted((REPO_ROOT / "inventories").rglob("*")) if p.is_file()])
    unused = sorted(set(docs) - set(used) - set(inventories))
    assert not unused, f"docs/variables.md documents variables nothing uses: {unused}"


@pytest.mark.parametrize("role", ROLES)
def test_the_used_by_column_names_each_role_variable_that_follows_a_shared_one(role):
    docs = documented()
    defaults_file = ROLES_DIR / role / "defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    for name, value in (defaults or {}).items():
        for shared in set(SHARED_VARIABLE.findall(str(value))):
            assert f"`{name}`" in docs.get(shared, ""), \
                f"docs/variables.md: the 'Used by' cell of {shared} does not name `{name}` (roles/{role}/defaults)"
    for shared in references(SHARED_VARIABLE, role_files(role)):
        assert role in docs.get(shared, ""), \
            f"docs/variables.md: the 'Used by' cell of {shared} does not name the role {role}, which uses it"


@pytest.mark.parametrize("role", ROLES)
def test_a_role_default_that_follows_a_shared_variable_keeps_a_built_in_default(role):
    """Used alone, without the shared variable set, the role still has a value."""
    defaults_file = ROLES_DIR / role / "defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    for name, value in (defaults or {}).items():
        for match in re.finditer(r"(servicemesh_istio_[a-z0-9_]+)(\s*\|\s*default\()?", str(value)):
            assert match.group(2), f"roles/{role}: {name} reads {match.group(1)} without a default(...)"
