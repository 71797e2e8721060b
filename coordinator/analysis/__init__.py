"""Multi-model comparison: metrics of out-of-sample predictions, calibration, the
season-block bootstrap, ROC and calibration plots, LaTeX tables and an offline HTML report
(docs/compare.md). ``compare.write_comparison`` turns comparison jobs' predictions files
into every output."""
