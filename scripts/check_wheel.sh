#!/usr/bin/env bash
# Build the wheel and prove the packaged install works outside the checkout: import, CLI,
# the converter worker (under its unambiguous name) and a sandboxed conversion.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${SAFELOAD_VENV:-$ROOT/.venv}/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$work/dist" "$ROOT"
python3 -m venv --system-site-packages "$work/venv" 2>/dev/null || python3 -m venv "$work/venv"
# torch etc. come from the dev venv's site-packages; the wheel itself is installed for real.
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site" > "$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/devdeps.pth"
"$work/venv/bin/pip" install -q --no-deps "$work"/dist/safeload-*.whl
cd "$work"
"$work/venv/bin/python" - <<'PY'
import os, subprocess, sys, tempfile
import safeload, safeload_conversion, torch
assert "site-packages" in safeload.__file__, safeload.__file__
assert "site-packages" in safeload_conversion.__file__
d = tempfile.mkdtemp()
os.environ["SAFELOAD_HOME"] = d
p = os.path.join(d, "m.pt")
torch.save({"w": torch.arange(3.0)}, p)
assert torch.equal(safeload.load(p)["w"], torch.arange(3.0))
rc = subprocess.run([sys.executable, "-m", "safeload", "scan", p]).returncode
assert rc == 0, rc
print("wheel ok:", safeload.__file__)
PY
"$work/venv/bin/safeload" --version
