"""Scheduling: the pure router, learned placement and speed, the decision after an attempt
ends, PBT, the loop and resume."""
