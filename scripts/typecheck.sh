#!/usr/bin/env bash
# Type-check the whole neurosleuth package with mypy (config: [tool.mypy] in pyproject.toml).
#
# The package's folders are mapped by setuptools' package-dir (neurosleuth.tools = tools/, ...),
# which mypy cannot follow, so this builds a throwaway tree of symlinks
# build/typecheck/neurosleuth/<stage> -> ../../../<stage>, one per stage that pyproject's
# package-dir lists, and runs `mypy -p neurosleuth` from there.
#
# Usage: scripts/typecheck.sh [extra mypy arguments]   (PY picks the interpreter; default .venv)
set -euo pipefail
here="$PWD"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PY:-$root/.venv/bin/python}"
case "$PY" in /*) ;; */*) PY="$here/$PY" ;; esac  # a relative path: from where we were called
tree="$root/build/typecheck"
rm -rf "$tree"
mkdir -p "$tree/neurosleuth"
# The stages, read from pyproject: every top-level "neurosleuth.<stage>" = "<folder>" mapping.
"$PY" - "$tree/neurosleuth" <<'PYEOF'
import os
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
out = sys.argv[1]
for name, folder in sorted(dirs.items()):
    parts = name.split(".")
    if len(parts) != 2 or parts[0] != "neurosleuth":
        continue  # subpackages live inside their stage's folder
    if not os.path.isdir(folder):
        sys.exit(f"typecheck: package-dir maps {name} to {folder!r}, which is not a folder")
    os.symlink(os.path.join("..", "..", "..", folder), os.path.join(out, parts[1]))
PYEOF
cd "$tree"
exec "$PY" -m mypy --config-file "$root/pyproject.toml" --cache-dir "$root/build/mypy_cache" \
    -p neurosleuth "$@"
