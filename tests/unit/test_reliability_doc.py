# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/reliability.md: its Counts table says how many rows each section has,
and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/reliability.md").read_text()


def sections() -> dict[str, list[str]]:
    """Heading -> the rows of its table (header and rule left out)."""
    out: dict[str, list[str]] = {}
    heading = None
    for line in DOC.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            out.setdefault(heading, [])
        elif heading and line.startswith("| ") and not line.startswith("| ---"):
            out[heading].append(line)
    return {name: rows[1:] for name, rows in out.items() if rows}


def test_the_counts_table_matches_each_section():
    tables = sections()
    counts = {row.split(" | ")[0].strip("| "): int(row.split(" | ")[1]) for row in tables.pop("Counts")}
    assert counts == {name: len(rows) for name, rows in tables.items()}


def test_every_test_file_and_function_it_names_exists():
    named = set(re.findall(r"`(test_[a-z_]+\.py)(?:::(test_[a-z_]+))?", DOC))
    assert named
    files = {p.name: p for p in (ROOT / "tests").rglob("test_*.py")}
    for file_name, function in named:
        assert file_name in files, file_name
        if function:
            assert f"def {function}(" in files[file_name].read_text(), (file_name, function)
