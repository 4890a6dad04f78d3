#!/usr/bin/env bash
# Take a fresh Debian machine (root, apt + PyPI reachable) to a working materials-ham install.
#   - Debian build dependencies of GPAW (libxc, OpenBLAS, FFTW) and python3-venv
#   - a virtual environment in .venv
#   - torch==2.13.0 FIRST (CPU wheel; otherwise a multi-GB CUDA build is pulled in)
#   - GPAW compiled against the Debian libraries (pinned version, see pyproject.toml)
#   - the package itself with all extras, editable
# Idempotent: a stamp file records what was installed; re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${MATERIALS_HAM_VENV:-$ROOT/.venv}"
TORCH_VERSION="2.13.0"
GPAW_VERSION="26.7.0"
GPAW_DATA_VERSION="1.2.1"
STAMP="$VENV/.materials-ham-bootstrap"
WANT="torch=$TORCH_VERSION gpaw=$GPAW_VERSION gpaw-data=$GPAW_DATA_VERSION pyproject=$(sha256sum pyproject.toml | cut -c1-16)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi

need_apt=()
for pkg in libxc-dev libopenblas-dev libfftw3-dev g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv python3-dev)
if (( ${#need_apt[@]} )); then
  echo "[bootstrap] apt-get install ${need_apt[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
echo "[bootstrap] torch==$TORCH_VERSION (CPU)"
# Outside a machine whose pip already resolves the CPU wheel, set TORCH_INDEX_URL to the CPU wheel index.
"${PIP[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
if ! "$VENV/bin/python" -c "import gpaw, sys; sys.exit(gpaw.__version__ != '$GPAW_VERSION')" 2>/dev/null; then
  echo "[bootstrap] building gpaw==$GPAW_VERSION (about a minute)"
  GPAW_CONFIG="$ROOT/scripts/gpaw-siteconfig.py" "${PIP[@]}" "gpaw==$GPAW_VERSION" "gpaw-data==$GPAW_DATA_VERSION"
fi
echo "[bootstrap] materials-ham and its extras"
"${PIP[@]}" -e ".[all]"
echo "$WANT" > "$STAMP"
echo "[bootstrap] done: $VENV"
