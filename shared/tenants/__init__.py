"""Tenants: client keys managed at run time (keystore.py), the server's secrets (secrets.py) and
per-tenant admission limits and budgets (admission.py)."""
