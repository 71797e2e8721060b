#!/usr/bin/env bash
# Set up coord and everything its tests need on a fresh Debian/Ubuntu machine (or macOS,
# minus the apt part). Idempotent: run it again after pulling.
#   bash scripts/install.sh           # CPU build of XGBoost unless nvidia-smi is present
#   COORD_XGBOOST=gpu bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PKGS="openssh-server openssh-client texlive-latex-base texlive-latex-recommended"

if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

flavour=${COORD_XGBOOST:-}
if [ -z "$flavour" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
fi

# torch is pinned: an unpinned install pulls several GB of CUDA wheels on a CPU machine.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[${flavour},test]"
echo "coord installed ($("$PY" -m pip show coord 2>/dev/null | awk '/^Version/{print $2}'), xgboost: $flavour build)"
