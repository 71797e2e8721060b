"""Run one built-in trial in a fresh process: ``COORD_SPEC=spec.json python run_trial.py``.

Used for exact reruns, on hosts without a warm worker, and as each rank of a trial that spans
several processes (``ddp_launch.py``); the exit code is the protocol's.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ddp  # noqa: E402
import trialkit  # noqa: E402

if __name__ == "__main__":
    trialkit.catch_term_early()
    sys.exit(ddp.finish(trialkit.run_spec(trialkit.read_spec())))  # under torchrun: rank 0's code
