#!/usr/bin/env bash
# Quick start: install, then lint, type-check and run every test. Arguments go to pytest.
source "$(dirname "$0")/bootstrap.sh"
ruff check api worker shared tests bench
mypy
exec python -m pytest "$@"
