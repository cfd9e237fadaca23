#!/usr/bin/env bash
# The test suite, as CI runs it: lint, types, tests, and the wheel installed in a fresh venv.
source "$(dirname "$0")/_venv.sh" test
cd "$ROOT"
echo "== ruff"; "$VENV/bin/ruff" check safeload conversion tests benchmarks
# `conversion/` is installed as `safeload_conversion`: a link lets mypy see it under that name.
mkdir -p .mypy_shim && ln -sfn ../conversion .mypy_shim/safeload_conversion
echo "== mypy"; MYPYPATH=.mypy_shim "$VENV/bin/mypy" -p safeload -p safeload_conversion
echo "== pytest"; "$PY" -m pytest -q -p no:cacheprovider "$@"
echo "== wheel in a fresh venv"; bash scripts/check_wheel.sh
