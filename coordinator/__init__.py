"""coord: one hyperparameter-optimisation cluster from the machines a researcher owns."""

__version__ = "0.1.0"
