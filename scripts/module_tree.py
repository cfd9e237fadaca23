"""Print the package's module tree: each module's line count and its docstring's first line.

    python scripts/module_tree.py [--markdown]

For reviews and closing notes (issue 10): what each module is for, in one line, and where the
big ones are. Reads the source with `ast`; imports nothing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (("safeload", ROOT / "safeload"), ("safeload_conversion", ROOT / "conversion"))


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"


def main() -> int:
    markdown = "--markdown" in sys.argv[1:]
    total = 0
    for package, folder in PACKAGES:
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            lines = len(path.read_text(encoding="utf-8").splitlines())
            total += 1
            if markdown:
                print(f"- `{name}` ({lines}): {_summary(path)}")
            else:
                print(f"{name:<48} {lines:5d}  {_summary(path)}")
    print(f"{total} modules", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
