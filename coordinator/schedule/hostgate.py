"""Whether a platform with host conditions (``available: {when_idle: ..., on_ac_power: ...}``,
config/windows.py) is open now, from the samples its host sends (backends/hostwatch.py).

- Others' load: the host's 1-minute load average less this run's own share. The kernel
  averages its run queue over a minute, so the run's own CPU use (cores, per sample) is
  averaged the same way (an exponential average with a 60 s time constant) before it is
  taken off: a trial that just started or ended does not open or close its own host.
- Hysteresis: a sample that breaks a condition closes the platform at once; it opens again
  only when every sample for ``settle_s`` has kept them all. A host on the edge of its
  threshold therefore changes state at most once per ``settle_s``, not every sample.
- No sample yet: closed (the first arrives within a second or two of the start); a host
  that stops answering keeps its last state (its agent's own watchdog handles the host).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.backends.hostwatch import HostSample
from coordinator.config.windows import Conditions

LOAD_TAU_S = 60.0  # the kernel's 1-minute load average


@dataclass
class Gate:
    cond: Conditions
    open: bool = False
    seen: float | None = None  # the last sample's time
    own: float | None = None  # this run's own share of the load, averaged as the kernel does
    fine_since: float | None = None  # since when every sample kept the conditions
    why: str = "no reading from the host yet"

    def others_load(self, s: HostSample) -> float | None:
        if s.load1 is None:
            return None
        if self.own is None or self.seen is None:
            self.own = s.own_cpu
        else:
            k = 1.0 - math.exp(-max(0.0, s.at - self.seen) / LOAD_TAU_S)
            self.own += (s.own_cpu - self.own) * k
        return max(0.0, s.load1 - self.own)

    def broken(self, s: HostSample) -> str | None:
        """Which condition this sample breaks, in words, or None."""
        c = self.cond
        load = self.others_load(s)
        if c.on_ac_power and s.on_ac is False:  # a host that does not say counts as on AC
            return "on battery"
        if c.load_below is not None and load is not None and load >= c.load_below:
            return f"others' load {load:.2f} >= {c.load_below:g}"
        if c.gpu_procs_below is not None and s.gpu_procs is not None and s.gpu_procs >= c.gpu_procs_below:
            return f"{s.gpu_procs} other GPU process{'es' if s.gpu_procs != 1 else ''} (>= {c.gpu_procs_below})"
        return None

    def update(self, s: HostSample | None) -> bool:
        """Open now? Feeds a new sample once (the same sample again changes nothing)."""
        if s is None or s.at == self.seen:
            return self.open
        why = self.broken(s)
        first = self.seen is None
        self.seen = s.at
        if why is not None:
            self.open, self.fine_since, self.why = False, None, why
        else:
            self.fine_since = s.at if self.fine_since is None else self.fine_since
            # the first reading opens at once: there was no state to flap from
            if first or s.at - self.fine_since >= self.cond.settle_s:
                self.open, self.why = True, ""
        return self.open
