#!/usr/bin/env bash
# The test suite, as CI runs it: lint, types, tests, and the wheel installed in a fresh venv.
source "$(dirname "$0")/_venv.sh" test
cd "$ROOT"
echo "== ruff"; "$VENV/bin/ruff" check safeload conversion tests benchmarks examples
# `conversion/` is installed as `safeload_conversion`: a link lets mypy see it under that name.
mkdir -p .mypy_shim && ln -sfn ../conversion .mypy_shim/safeload_conversion
echo "== mypy"; MYPYPATH=.mypy_shim "$VENV/bin/mypy" -p safeload -p safeload_conversion
# The reference OMS verifier, in a venv of its own (interop tests run its CLI on our bundles).
MS_VENV="${SAFELOAD_MS_VENV:-$ROOT/.venv-model-signing}"
if [ ! -x "$MS_VENV/bin/model_signing" ]; then
  python3 -m venv "$MS_VENV" && "$MS_VENV/bin/pip" install -q "model-signing==1.1.1" pyopenssl blake3 \
    || echo "warning: could not install model-signing; interop tests will be skipped"
fi
export SAFELOAD_MODEL_SIGNING="$MS_VENV/bin/model_signing"
echo "== pytest"; "$PY" -m pytest -q -p no:cacheprovider "$@"
echo "== wheel in a fresh venv"; bash scripts/check_wheel.sh
