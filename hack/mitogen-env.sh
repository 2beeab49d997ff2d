#!/usr/bin/env bash
# Opt-in: run the collection's playbooks with Mitogen's strategy plugin
# (mitogen_linear) instead of Ansible's default `linear`. Mitogen keeps one
# Python interpreter per host for the whole run and runs modules inside it,
# so a module's start (Python, ansible.module_utils, the Kubernetes client)
# is paid once instead of once per task (docs/performance.md, "Mitogen").
#
#   eval "$(hack/mitogen-env.sh)"          # this shell: exports the two variables
#   make site                              # ... then make site, ansible-playbook, pytest use it
#   hack/mitogen-env.sh -- COMMAND ARGS    # or just one command with it
#
# It finds Mitogen in the development tool chain (.venv, `make setup` installs
# mitogen from requirements-dev.txt); PYTHON=/path/to/python3 picks another
# interpreter that has it (`pip install mitogen==0.3.54`). The default
# strategy stays the default: nothing changes unless these variables are set.
# Not in AWX execution environments unless added there (docs/awx.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$py" ] || { echo "ERROR: $py not found; run 'make setup' first (or set PYTHON)" >&2; exit 1; }
# ansible_mitogen's strategy plugins live in its package, not in a collection:
# ANSIBLE_STRATEGY_PLUGINS must point at that directory.
dir=$("$py" -c 'import os, ansible_mitogen; print(os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy"))' 2>/dev/null) || {
  echo "ERROR: Mitogen is not installed for $py; run 'make setup' (requirements-dev.txt pins mitogen) or 'pip install mitogen==0.3.54'" >&2
  exit 1
}
[ -f "$dir/mitogen_linear.py" ] || { echo "ERROR: $dir/mitogen_linear.py not found: not a Mitogen for Ansible install" >&2; exit 1; }
if [ "${1:-}" = "--" ]; then
  shift
  [ $# -gt 0 ] || { echo "usage: $0 [-- COMMAND ARGS...]" >&2; exit 2; }
  export ANSIBLE_STRATEGY_PLUGINS="$dir" ANSIBLE_STRATEGY=mitogen_linear
  exec "$@"
fi
[ $# -eq 0 ] || { echo "usage: $0 [-- COMMAND ARGS...]" >&2; exit 2; }
printf 'export ANSIBLE_STRATEGY_PLUGINS=%q\nexport ANSIBLE_STRATEGY=mitogen_linear\n' "$dir"
