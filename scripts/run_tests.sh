#!/usr/bin/env bash
# The README's test command: install pinned dependencies, lint, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m ruff check .
python -m ruff format --check .
# the import contract in pyproject.toml; from the interpreter's own bin, which a pyenv shim may not know yet
"$(python -c 'import os, sys; print(os.path.dirname(sys.executable))')/lint-imports"
python -m pytest -q "$@"
