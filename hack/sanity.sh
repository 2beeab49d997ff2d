#!/usr/bin/env bash
# `ansible-test sanity` on the collection. ansible-test needs the collection
# at a real path ending in ansible_collections/<namespace>/<name>, so the
# tracked files are copied there first.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMI_CACHE=${SMI_CACHE:-/var/cache/servicemesh-istio}
dest="$SMI_CACHE/sanity/ansible_collections/servicemesh/istio"
mkdir -p "$dest"
rsync -a --delete --exclude .git --exclude .venv --exclude .collections --exclude .ansible \
  --exclude tests/output --exclude __pycache__ --exclude .pytest_cache "$ROOT/" "$dest/"
cd "$dest"
# git metadata lets ansible-test list exactly the tracked and untracked files.
git -C "$ROOT" ls-files --cached --others --exclude-standard >/dev/null
echo "== ansible-test sanity (first run installs its test requirements, about 2 min)"
"$ROOT/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
