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
# The modules' documentation extends kubernetes.core's doc fragment; ansible-test
# only looks for other collections beside this one, so put the bundled copy there.
site=$("$ROOT/.venv/bin/python" -c 'import ansible_collections.kubernetes.core as m, os; print(os.path.dirname(m.__path__[0]))')
rsync -a --delete "$site/" "$SMI_CACHE/sanity/ansible_collections/kubernetes/"
# `ansible-test sanity --venv` bootstraps pip in each test venv with get-pip.py,
# whose download host is not reachable from here: give it a stand-in that uses
# the standard library's ensurepip and then pip (from PyPI) itself.
getpip=$("$ROOT/.venv/bin/python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"].replace(".", "_"))
PY
)
mkdir -p "$HOME/.ansible/test/cache"
cat >"$HOME/.ansible/test/cache/get_pip_$getpip.py" <<'PY'
# Stand-in for get-pip.py written by hack/sanity.sh: bootstrap pip with ensurepip,
# then let pip install what ansible-test asked for.
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
PY
cd "$dest"
echo "== ansible-test sanity (first run installs its test requirements, about 2 min)"
"$ROOT/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
