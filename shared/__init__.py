"""Code shared by the API and the workers: the internal model, dialects, config, Redis layer."""
