"""`python -m bench …`: see bench/__init__.py."""

from bench.main import main

main()
