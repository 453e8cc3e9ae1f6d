#!/usr/bin/env bash
# Installs gate and everything it needs into a fresh virtual environment. CI, the README's set-up command and the
# Dockerfile all call this script, so a green CI run proves the install steps.
#
#   .ci/install.sh [VENV_DIR] [EXTRAS]      defaults: .venv  all,examples,test
#
# TORCH_VERSION (default 2.13.0) and TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) pick the torch build.
# torch is installed first and alone, so nothing that depends on it can pull a multi-GB CUDA build by accident.
# GATE_INSTALL_BROWSER=1 (the default when CI=true) also installs Debian's chromium for the HTML report's browser
# test, where apt-get exists and the script runs as root; a failure there only skips that test. The Dockerfile's
# dependency step (GATE_DEPS_ONLY=1) never installs it.
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-all,examples,test}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

install_browser="${GATE_INSTALL_BROWSER:-$([ "${CI:-}" = "true" ] && echo 1 || echo 0)}"
if [ "$install_browser" = "1" ] && [ "${GATE_DEPS_ONLY:-0}" != "1" ]; then
  if command -v chromium >/dev/null 2>&1; then
    :
  elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >/dev/null 2>&1 || echo "install.sh: could not install chromium; the HTML browser test will be skipped" >&2
  else
    echo "install.sh: chromium not installed (needs apt-get and root); the HTML browser test will be skipped" >&2
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
if ! "${pip[@]}" install -q --upgrade pip; then
  echo "install.sh: upgrading pip in $venv failed (no index reachable? set PIP_INDEX_URL / PIP_CERT)" >&2
  exit 1
fi
torch_spec="torch==${TORCH_VERSION:-2.13.0}"
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${pip[@]}" install -q "$torch_spec" --index-url "$TORCH_INDEX_URL"
else
  "${pip[@]}" install -q "$torch_spec"
fi
if [ "${GATE_DEPS_ONLY:-0}" = "1" ]; then
  # Docker layer caching: install the dependencies now, the package itself later.
  "$venv/bin/python" - "$here/pyproject.toml" "$extras" > "$venv/gate-deps.txt" <<'PY'
import sys, tomllib
meta = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = list(meta["dependencies"])
extras = [e for e in sys.argv[2].split(",") if e]
opt = meta.get("optional-dependencies", {})
def expand(name):
    for req in opt.get(name, []):
        if req.startswith("pytorch-gate["):
            for sub in req[len("pytorch-gate["):-1].split(","):
                yield from expand(sub)
        else:
            yield req
for e in extras:
    deps.extend(expand(e))
print("\n".join(deps))
PY
  "${pip[@]}" install -q -r "$venv/gate-deps.txt" "$torch_spec"
else
  "${pip[@]}" install -q "$here[$extras]" "$torch_spec"
fi
if [ "${GATE_DEPS_ONLY:-0}" = "1" ]; then
  "$venv/bin/python" -c "import torch; print(f'dependencies with torch {torch.__version__} in $venv')"
else
  "$venv/bin/python" -c "import torch, gate; print(f'gate {gate.__version__} with torch {torch.__version__} in $venv')"
fi
