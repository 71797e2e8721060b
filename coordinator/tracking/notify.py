"""``--notify COMMAND``: the user's own command (a desktop notification, a mail, a chat
webhook script) run on what a person wants to hear about while away from the terminal:

- ``search_end``: the search ended (how, the counts, the best value, what ended it);
- ``failures``: a burst of failures (``BURST`` trial failures in a row);
- ``host_down``: a host could not be reached or was quarantined (its trials go elsewhere);
- ``budget``: 80% of a budget is used.

The event is one JSON object on the command's stdin, never on its command line (values
from the run never reach a shell); the command is split like a shell would (``shlex``) and
run without one. Each runs in a background thread with a time limit: a slow or failing
notifier never slows or stops the search (it is logged once, as a warning).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from typing import Any

from coordinator.config.experiment import parse_notify
from coordinator.records import Result, TrialStatus
from coordinator.tracking.tracker import Tracker

log = logging.getLogger(__name__)
BURST = 3  # this many failed trials in a row is a burst worth a message
TIMEOUT_S = 30.0


class Notifier(Tracker):
    def __init__(self, command: str, run: str) -> None:
        self.argv, self.run = parse_notify(command), run
        self.failed_in_a_row = 0
        self.threads: list[threading.Thread] = []
        self.warned = False

    def send(self, event: str, **info: Any) -> None:
        message = json.dumps({"event": event, "run": self.run, "time": time.time(), **info}, default=str)
        thread = threading.Thread(target=self._run, args=(message,), name="coord-notify", daemon=True)
        thread.start()
        self.threads.append(thread)

    def _run(self, message: str) -> None:
        try:
            proc = subprocess.run(self.argv, input=message + "\n", capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False)
            why = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}" if proc.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
        if why and not self.warned:
            self.warned = True
            log.warning("--notify %s failed (%s); the search goes on", self.argv[0], why)

    def on_trial_end(self, result: Result) -> None:
        if result.status != TrialStatus.FAILED:
            self.failed_in_a_row = 0
            return
        self.failed_in_a_row += 1
        if self.failed_in_a_row == BURST:
            self.send("failures", count=BURST, last_trial=result.number, study=result.study,
                      error=(result.error or "")[-500:])

    def on_alert(self, kind: str, info: dict[str, Any]) -> None:
        self.send(kind, **info)

    def on_search_end(self, summary: dict[str, Any]) -> None:
        self.send("search_end", **summary)

    def close(self) -> None:
        """Wait (at most the time limit) for messages still being sent: the last one is the search's end."""
        end = time.monotonic() + TIMEOUT_S
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
