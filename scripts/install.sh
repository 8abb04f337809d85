#!/usr/bin/env bash
# Creates (once) and fills the project's virtual environment in .venv.
# Re-running is cheap: it does nothing when .venv/.installed is newer than pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TAML_VENV:-.venv}
STAMP="$VENV/.installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/install.sh ]; then
  exit 0
fi
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" - <<'PY' || { echo "taml needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
echo "[install] torch 2.14.1, torchvision 0.29.1 and taml's dependencies into $VENV"
$PIP install -q -e '.[dev]'
# learn2learn 0.2.0 ships C sources that no longer compile on Python 3.11; regenerating
# them with Cython (build_ext) makes the sdist build. --no-deps: its gsutil/qpth
# requirements are not needed for the vision datasets and the MAML reference we use.
# --use-pep517: pip 23.2 (Python 3.11's own) ignores --config-settings on the legacy
# setup.py path, compiles the stale C sources and fails on longintrepr.h.
if ! "$VENV/bin/python" -c "import learn2learn" >/dev/null 2>&1; then
  echo "[install] building learn2learn 0.2.0 from source (about 30 s)"
  $PIP install -q --use-pep517 --no-deps --no-build-isolation \
    --config-settings=--build-option=build_ext learn2learn==0.2.0
fi
touch "$STAMP"
echo "[install] done"
