"""Run one built-in trial in a fresh process: ``COORD_SPEC=spec.json python run_trial.py``.

Used for exact reruns and on hosts without a warm worker; the exit code is the protocol's.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trialkit  # noqa: E402

if __name__ == "__main__":
    sys.exit(trialkit.run_spec(trialkit.read_spec()))
