"""The run directory (the source of truth) and checkpoint space."""
