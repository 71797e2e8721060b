"""Reports rebuilt from the run directory: CSV, LaTeX tables, figures."""
