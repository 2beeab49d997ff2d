"""The Ansible strategy a benchmark runs its playbooks with: Ansible's default
(`linear`) or Mitogen's `mitogen_linear`, turned on as users turn it on, by
the variables hack/mitogen-env.sh exports (docs/performance.md, "Mitogen")."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("default", "mitogen")
_VARIABLES = ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS")


def choices(value: str) -> list[str]:
    """The strategies of a --strategy option: one of STRATEGIES, or `both` (default first)."""
    return list(STRATEGIES) if value == "both" else [value]


def strategy_env(name: str, base: dict) -> dict:
    """BASE with the strategy NAME: for `default`, without any strategy variable of
    the caller's environment; for `mitogen`, with those of hack/mitogen-env.sh."""
    env = {k: v for k, v in base.items() if k not in _VARIABLES}
    if name == "default":
        return env
    if name != "mitogen":
        raise ValueError(f"unknown strategy {name!r}: {', '.join(STRATEGIES)}")
    proc = subprocess.run(["bash", str(ROOT / "hack/mitogen-env.sh"), "--", "env", "-0"], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"hack/mitogen-env.sh failed: {proc.stderr.strip()}")
    found = dict(item.split("=", 1) for item in proc.stdout.split("\0") if item.startswith(_VARIABLES))
    return dict(env, **{k: found[k] for k in _VARIABLES})
