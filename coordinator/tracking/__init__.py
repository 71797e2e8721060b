"""Tracker callbacks and the progress display."""
