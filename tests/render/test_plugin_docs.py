"""The module reference in docs/plugins/ is what antsibull-docs makes of the
modules' own DOCUMENTATION, EXAMPLES and RETURN today (issue 12: docs
generated from the code, not written by hand), and docs/modules.md lists
every one of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO_ROOT / "plugins/modules").glob("*.py") if not p.name.startswith("_"))


def test_plugin_pages_are_generated_from_the_code():
    proc = subprocess.run([REPO_ROOT / ".venv/bin/python", REPO_ROOT / "hack/gen_plugin_docs.py", "--check"],
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, f"run hack/gen_plugin_docs.py: {proc.stdout}{proc.stderr}"


def test_every_module_has_a_page_and_a_row_in_the_index():
    index = (REPO_ROOT / "docs/modules.md").read_text()
    for name in MODULES:
        page = REPO_ROOT / "docs/plugins" / f"{name}_module.rst"
        assert page.is_file(), f"{page.relative_to(REPO_ROOT)} is missing: run hack/gen_plugin_docs.py"
        assert f"servicemesh.istio.{name} module -- " in page.read_text()
        assert f"(plugins/{name}_module.rst)" in index, f"docs/modules.md does not list {name}"
