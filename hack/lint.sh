#!/usr/bin/env bash
# Static gates: yamllint, ansible-lint (production profile with the opt-in
# rules no-log-password and role-argument-spec, see .ansible-lint),
# antsibull-changelog lint, antsibull-docs lint-collection-docs (plugin and
# role docs) with docs/plugins/ current, and `ansible-playbook --syntax-check`
# of every playbook against every inventory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections" ANSIBLE_CONFIG="$PWD/ansible.cfg" NO_COLOR=1 ANSIBLE_NOCOLOR=1
V=.venv/bin
PATH="$(readlink -f .venv)/bin:$PATH"

echo "== yamllint"
$V/yamllint --strict .
echo "yamllint: clean"

echo "== ansible-lint (profile: production)"
# A home of its own: ansible-lint also looks in ~/.ansible/collections, where a
# copy of this collection installed by another tool (molecule's prerun, an
# earlier ansible-galaxy install) would be linted instead of this checkout.
mkdir -p "${SMI_CACHE:-/var/cache/servicemesh-istio}/lint-home"
HOME="${SMI_CACHE:-/var/cache/servicemesh-istio}/lint-home" $V/ansible-lint --nocolor --profile production --strict -q
echo "ansible-lint: clean"

echo "== changelog fragments"
$V/antsibull-changelog lint
echo "antsibull-changelog: clean"

echo "== collection docs (antsibull-docs)"
# Plugin and role documentation against antsibull-docs' schemas and markup,
# and docs/plugins/ generated from the code (hack/gen_plugin_docs.py).
root=$PWD
(cd .collections/ansible_collections/servicemesh/istio &&
  "$root/$V/antsibull-docs" lint-collection-docs --plugin-docs --validate-collection-refs self .)
$V/python hack/gen_plugin_docs.py --check
echo "antsibull-docs: clean, docs/plugins current"

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
