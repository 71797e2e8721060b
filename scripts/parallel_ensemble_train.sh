#!/usr/bin/env bash
# Multi-model comparison (Chapter 4): GLM, XGBoost, random forest and the MLP searched in
# one run, sharing the machines by the registry's routing rules; one LaTeX summary row per
# model. Usage: scripts/parallel_ensemble_train.sh [--data F.csv --target COL --time-col season] [...]
set -euo pipefail
RUN_DIR="${COORD_RUNS_DIR:-runs}/ensemble-$(date +%Y%m%d-%H%M%S)"
coord search --model glm --model xgboost --model random_forest --model mlp \
  --trials "${TRIALS:-20}" --run-dir "$RUN_DIR" "$@"
echo "comparison table: $RUN_DIR/report/tables/model_summary.tex"
