#!/usr/bin/env bash
# The test suite, as CI runs it: lint, types, tests, and the wheel installed in a fresh venv.
source "$(dirname "$0")/_venv.sh" test
cd "$ROOT"
echo "== ruff"; "$VENV/bin/ruff" check safeload conversion tests benchmarks
echo "== mypy"; "$VENV/bin/mypy" safeload conversion
echo "== pytest"; "$PY" -m pytest -q -p no:cacheprovider "$@"
echo "== wheel in a fresh venv"; bash scripts/check_wheel.sh
