#!/usr/bin/env bash
# Set up coord and everything its tests need on a fresh Debian/Ubuntu machine (or macOS,
# minus the apt part). Idempotent: run it again after pulling.
#   bash scripts/install.sh           # CPU build of XGBoost unless nvidia-smi is present
#   COORD_XGBOOST=gpu bash scripts/install.sh
#
# Where it installs: into the virtual environment you have activated ($VIRTUAL_ENV), else
# into the Python named by $PYTHON, else python3's own site-packages. pip never runs under sudo.
# The Debian packages (sshd, LaTeX, SLURM and munge, PostgreSQL: needed by the tests only) are installed with apt-get
# only when one is missing: as root directly, otherwise through sudo. Without root and
# without sudo it prints the exact apt-get command for an administrator and goes on:
# coord itself runs without them, only the tests that start sshd or pdflatex need them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
  where="the virtual environment $VIRTUAL_ENV"
else
  PY=${PYTHON:-python3}
  where="$(command -v "$PY" || echo "$PY")"
fi
APT_PKGS="openssh-server openssh-client texlive-latex-base texlive-latex-recommended slurm-wlm munge postgresql"
# headless Chromium checks the HTML reports in the tests; Debian packages it so (Ubuntu only as a snap)
if [ -f /etc/debian_version ] && ! grep -qi ubuntu /etc/os-release 2>/dev/null; then
  APT_PKGS="$APT_PKGS chromium-headless-shell"
fi

if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  missing=""
  for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$missing"
    if [ "$(id -u)" -eq 0 ]; then
      echo "installing Debian packages:$missing"
      bash -c "$cmd" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
      echo "installing Debian packages with sudo:$missing"
      sudo bash -c "$cmd" >/dev/null
    else
      echo "install.sh: not root and no sudo: Debian packages$missing are missing (the tests need them, coord" \
           "does not); as root run: $cmd" >&2
    fi
  fi
fi

flavour=${COORD_XGBOOST:-}
if [ -z "$flavour" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
fi

# torch is pinned: an unpinned install pulls several GB of CUDA wheels on a CPU machine.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[${flavour},test,kubernetes]"
echo "coord installed into $where ($("$PY" -m pip show coord 2>/dev/null | awk '/^Version/{print $2}')," \
     "xgboost: $flavour build)"
