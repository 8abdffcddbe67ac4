"""`python -m bench.limits …`: see bench/limits/__init__.py."""

import sys

from bench.limits.main import main

sys.exit(main())
