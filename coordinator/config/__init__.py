"""Configuration: experiment options, hardware registry, search spaces, safe YAML, the
built-in model catalogue and data set."""
