"""Worker processes: each bound to one provider account, claiming its jobs under its limits."""
