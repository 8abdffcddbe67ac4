"""One router per client-facing resource."""
