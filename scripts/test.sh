#!/usr/bin/env bash
# The project's checks, as CI runs them: lint, types, layering, then the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k redfish -x).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
echo "== ruff";          ruff check .
echo "== mypy";          mypy
echo "== import-linter"; lint-imports
echo "== state diagram is current"; python -m metalplane.lifecycle.diagram --check docs/states.md
echo "== pytest";        pytest -q -ra "$@"
