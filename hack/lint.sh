#!/usr/bin/env bash
# Static gates: yamllint, ansible-lint (production profile with the opt-in
# rules no-log-password and role-argument-spec, see .ansible-lint) and
# `ansible-playbook --syntax-check` of every playbook against every inventory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections" ANSIBLE_CONFIG="$PWD/ansible.cfg" NO_COLOR=1 ANSIBLE_NOCOLOR=1
V=.venv/bin
PATH="$(readlink -f .venv)/bin:$PATH"

echo "== yamllint"
$V/yamllint --strict .
echo "yamllint: clean"

echo "== ansible-lint (profile: production)"
$V/ansible-lint --nocolor --profile production --strict -q
echo "ansible-lint: clean"

echo "== changelog fragments"
$V/antsibull-changelog lint
echo "antsibull-changelog: clean"

echo "== syntax check"
shopt -s nullglob
n=0
for inv in inventories/*/; do
  for pb in playbooks/*.yml; do
    $V/ansible-playbook --syntax-check -i "$inv" "$pb" >/dev/null
    n=$((n + 1))
  done
done
echo "syntax check: $n playbook/inventory pairs clean"
