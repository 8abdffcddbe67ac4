#!/usr/bin/env bash
# Quick start: install, then run Redis (embedded when none answers), the mock provider, one
# worker per account and the API. Arguments go to `sluice dev` (e.g. --port, --config).
source "$(dirname "$0")/bootstrap.sh"
exec sluice dev "$@"
