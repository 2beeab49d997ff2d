"""The processes under a PID, from /proc (for the life-cycle tests that watch a run's process tree)."""

from __future__ import annotations

from pathlib import Path


def process_tree(pid: int, include_self: bool = True) -> list[int]:
    """PID (unless ``include_self`` is false) and every process below it, as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid] if include_self else list(children.get(pid, []))
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out
