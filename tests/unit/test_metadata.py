# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""galaxy.yml's version, the plugins' version_added and the changelog agree,
and requires_ansible covers exactly the ansible-core the tests run on.

- galaxy.yml's version is the latest release in changelogs/changelog.yaml,
  or, while fragments for the next release are waiting, a later one;
- every plugin's version_added (and each option's) is at most galaxy.yml's
  version; a plugin new in a released version is listed in that release's
  changelog entry; a plugin in no release is new in galaxy.yml's (unreleased)
  version;
- requires_ansible includes the ansible-core running these tests and excludes
  the next minor release, which nothing here tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from ansible import release as ansible_release
from ansible.module_utils.compat.version import LooseVersion
from ansible.parsing.plugin_docs import read_docstring

REPO_ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
CHANGES = yaml.safe_load((REPO_ROOT / "changelogs/changelog.yaml").read_text())
RELEASES = CHANGES.get("releases") or {}
FRAGMENTS = [p for p in (REPO_ROOT / "changelogs/fragments").iterdir() if p.suffix in (".yml", ".yaml")]
PLUGIN_DIRS = ("modules",)  # the plugin types whose files carry DOCUMENTATION with version_added


def V(text):  # noqa: N802 - a version, as the changelog tooling compares them
    return LooseVersion(str(text))


def plugins():
    for kind in PLUGIN_DIRS:
        for path in sorted((REPO_ROOT / "plugins" / kind).glob("*.py")):
            if not path.name.startswith("_"):
                yield kind, path


def documentation(path: Path) -> dict:
    """The plugin's own DOCUMENTATION, and the options of this collection's
    doc fragments it extends (their version_added counts as the plugin's)."""
    doc = read_docstring(str(path))["doc"]
    options = dict(doc.get("options") or {})
    for fragment in doc.get("extends_documentation_fragment") or []:
        if fragment.startswith("servicemesh.istio."):
            name = fragment.split(".")[2]
            text = ast.parse((REPO_ROOT / "plugins/doc_fragments" / f"{name}.py").read_text())
            for node in ast.walk(text):
                if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["DOCUMENTATION"]:
                    options.update(yaml.safe_load(node.value.value).get("options") or {})
    return {**doc, "options": options}


def option_versions(options: dict, prefix=""):
    for name, spec in (options or {}).items():
        if "version_added" in spec:
            yield prefix + name, spec["version_added"]
        yield from option_versions(spec.get("suboptions") or {}, f"{prefix}{name}.")


def test_galaxy_version_is_the_latest_release_or_the_next():
    assert RELEASES, "changelogs/changelog.yaml records no release (run antsibull-changelog release)"
    latest = max(RELEASES, key=V)
    if FRAGMENTS:
        assert V(GALAXY["version"]) >= V(latest), (GALAXY["version"], latest)
    else:
        assert GALAXY["version"] == latest, \
            f"galaxy.yml says {GALAXY['version']}, the latest release in the changelog is {latest}"
    if V(GALAXY["version"]) > V(latest):
        assert FRAGMENTS, f"galaxy.yml says {GALAXY['version']} but no changelog fragment waits for that release"


@pytest.mark.parametrize("kind, path", list(plugins()), ids=lambda v: getattr(v, "stem", v))
def test_version_added_agrees_with_galaxy_and_the_changelog(kind, path):
    doc = documentation(path)
    added = doc.get("version_added")
    assert added, f"{path.name}: no version_added"
    assert V(added) <= V(GALAXY["version"]), f"{path.name}: version_added {added} is after galaxy.yml's {GALAXY['version']}"
    for option, version in option_versions(doc.get("options")):
        assert V(added) < V(version) <= V(GALAXY["version"]), \
            f"{path.name}: option {option} version_added {version} (module {added}, galaxy {GALAXY['version']})"
    listed_in = [v for v, release in RELEASES.items()
                 if path.stem in [p["name"] for p in (release.get("plugins") or {}).get(kind[:-1], [])]
                 or path.stem in [p["name"] for p in release.get(kind, [])]]
    if str(added) in RELEASES:
        assert listed_in == [str(added)], f"{path.name}: new in {added}, but the changelog lists it in {listed_in}"
    else:
        assert listed_in == [] and str(added) == str(GALAXY["version"]) and V(added) > V(max(RELEASES, key=V)), \
            f"{path.name}: version_added {added} is neither a release in the changelog nor galaxy.yml's next version"


def test_requires_ansible_is_what_the_tests_run_on():
    from ansible.module_utils.six import PY3  # noqa: F401 - ansible-core importable
    from packaging.specifiers import SpecifierSet

    runtime = yaml.safe_load((REPO_ROOT / "meta/runtime.yml").read_text())
    spec = SpecifierSet(runtime["requires_ansible"])
    running = ansible_release.__version__
    major, minor = (int(x) for x in running.split(".")[:2])
    assert spec.contains(running, prereleases=True), f"requires_ansible {spec} excludes the tested {running}"
    assert not spec.contains(f"{major}.{minor + 1}.0"), \
        f"requires_ansible {spec} claims ansible-core {major}.{minor + 1}, which no test here runs on"
    assert not spec.contains(f"{major}.{minor - 1}.0"), \
        f"requires_ansible {spec} claims ansible-core {major}.{minor - 1}, which no test here runs on"
    pinned = [line.split("==", 1)[1].strip() for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
              if line.startswith("ansible-core==")]
    assert pinned == [running], f"the tests run on ansible-core {running}, requirements-dev.txt pins {pinned}"
