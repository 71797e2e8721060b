#!/usr/bin/env bash
# Multi-model comparison (Chapter 4): the chosen models trained in parallel on the
# registry's machines through coord compare (each model x seed one job, every calibration
# and walk-forward fold in it), then the comparison tables, figures and HTML report.
# Usage: scripts/parallel_ensemble_train.sh [coord compare options]
#   MODELS="glm xgboost" scripts/parallel_ensemble_train.sh --seeds 3 --data F.csv --target COL --time-col season
#   scripts/parallel_ensemble_train.sh --from runs/xgboost-20250101-120000 --seeds 3   # a search's best configurations
# Default MODELS: glm xgboost random_forest mlp (with --from: every model the searches ran).
# Exits non-zero with the reason if the comparison fails.
set -euo pipefail
RUN_DIR="${COORD_RUNS_DIR:-runs}/ensemble-$(date +%Y%m%d-%H%M%S)"
ARGS=()
case " $* " in
  *" --model "*|*" --from "*) ;;  # the caller chose
  *) for m in ${MODELS:-glm xgboost random_forest mlp}; do ARGS+=(--model "$m"); done ;;
esac
rc=0
coord compare "${ARGS[@]}" --run-dir "$RUN_DIR" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  if [ -f "${RUN_DIR}/run.json" ]; then where="continue it with: coord resume ${RUN_DIR}"; else where="nothing was run"; fi
  echo "parallel_ensemble_train: coord compare failed (exit ${rc}); the error is above; ${where}" >&2
  exit "$rc"
fi
echo "comparison: ${RUN_DIR}/compare/ (comparison.csv, tables/comparison.tex, figures/, report.html)"
