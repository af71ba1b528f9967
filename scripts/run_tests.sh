#!/usr/bin/env bash
# The README's test command: install pinned dependencies, lint, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m ruff check .
python -m ruff format --check .
lint-imports  # the import contract in pyproject.toml
python -m pytest -q "$@"
