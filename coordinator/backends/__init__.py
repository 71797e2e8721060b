"""Backends decide *how* a trial runs: local subprocess now, SSH, Kubernetes, SLURM later."""
