"""The admin API (`/admin/…`): keys, tenants' usage, accounts, queues, dead letters. Its own
token (api/admin/auth.py); its OpenAPI schema is served with the app's at /openapi.json."""
