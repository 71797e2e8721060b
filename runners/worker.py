"""A warm runner: one per slot, it imports the ML libraries and loads the data once,
then runs trial after trial (as Ray Tune reuses actors).

Protocol on stdin, one JSON object a line: ``{"spec": "/path/spec.json"}``.
For each, stdout carries the trial's ``[coord-metric]`` lines and then
``[coord-end] {"number": N, "attempt": K, "exit": CODE}``. Each trial's stderr goes to
``<attempt_dir>/stderr`` (fd 2 is redirected, so native libraries' output lands there
too). The coordinator kills the whole worker to cancel or time out a trial.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trialkit  # noqa: E402

END_PREFIX = "[coord-end]"


def _serve() -> None:
    saved_err = os.dup(2)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        spec = trialkit.read_spec(job["spec"])
        err_path = os.path.join(spec["attempt_dir"], "stderr")
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sys.stderr.flush()
        os.dup2(fd, 2)
        os.close(fd)
        try:
            code = trialkit.run_spec(spec)
        finally:
            sys.stderr.flush()
            os.dup2(saved_err, 2)
        sys.stdout.write(f"{END_PREFIX} {json.dumps({'number': spec['number'], 'attempt': spec['attempt'], 'exit': code})}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    for name in os.environ.get("COORD_PRELOAD", "").split(","):
        if name:  # import the model's libraries before the first trial arrives
            try:
                __import__(f"model_{name}")
            except ImportError:
                pass  # reported per trial, with the exit code for a missing library
    _serve()
