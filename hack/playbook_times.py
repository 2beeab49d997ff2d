"""Sum up the playbook runs of a test suite run (SMI_PLAYBOOK_TIMES, written by
tests/cluster/conftest.py's run_playbook): runs and seconds per test file, per
playbook with its options, and the slowest single runs.

    python hack/playbook_times.py FILE [TOP]
"""

from __future__ import annotations

import collections
import os
import sys


def main() -> int:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) == 3 else 15
    rows = []
    if not os.path.exists(sys.argv[1]):
        print(f"no playbook runs recorded ({sys.argv[1]} does not exist)")
        return 0
    with open(sys.argv[1], encoding="utf-8") as lines:
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 5:
                rows.append((parts[0], parts[1], parts[2], float(parts[3]), parts[4]))
    if not rows:
        print("no playbook runs recorded")
        return 0
    total = sum(r[3] for r in rows)
    print(f"{len(rows)} playbook runs, {total:.0f} s in all (the parts run side by side: this is not wall time)")
    for title, key in (("per test file", lambda r: r[0].split("::")[0]),
                       ("per playbook and options", lambda r: f"{r[1]} {r[2]}".strip())):
        sums: dict[str, list[float]] = collections.defaultdict(list)
        for row in rows:
            sums[key(row)].append(row[3])
        print(f"\n{title} (runs, seconds):")
        for name, secs in sorted(sums.items(), key=lambda kv: -sum(kv[1]))[:top]:
            print(f"  {len(secs):4d} {sum(secs):8.0f}  {name}")
    print("\nslowest runs:")
    for row in sorted(rows, key=lambda r: -r[3])[:top]:
        print(f"  {row[3]:7.0f}  rc={row[4]}  {row[1]} {row[2]}  ({row[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
