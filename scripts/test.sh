#!/usr/bin/env bash
# Quick start: install, then lint, type-check and run every test. Arguments go to pytest.
source "$(dirname "$0")/bootstrap.sh"
ruff check api worker shared tests bench
mypy
# bench/ is a folder of scripts that import each other by name: checked from inside it
(cd bench && mypy --strict --ignore-missing-imports --follow-imports=silent ./*.py)
exec python -m pytest "$@"
