"""How a SLURM attempt ended, as an ``Outcome``: its job's last squeue state (or ``GONE``,
or ``PILOT`` for an attempt a pilot job ran), the exit record its script or pilot wrote,
and why coord itself ended it. Pure: tested through the backend on the real cluster."""

from __future__ import annotations

from typing import Any

from coordinator import protocol
from coordinator.records import Outcome


def outcome(job: str, state: str, rec: dict[str, Any] | None, reason: str | None, pilot: bool, stderr: str,
            ran_s: float, logs: tuple[str, str]) -> Outcome:
    code = rec["exit"] if rec is not None else None
    assert code is None or isinstance(code, int)
    signalled = bool(rec and rec.get("signalled"))  # SLURM's --signal (or a preemption, scancel) reached it
    common: dict[str, Any] = {"duration_s": ran_s, "stderr": stderr, "logs": logs}
    if reason is not None:
        return Outcome(exit_code=code, cancelled=reason in ("cancelled", "pruned"), timed_out=reason == "timeout",
                       **common)
    # a pilot's trial that the signal stopped without a checkpoint (exit 75): someone's scancel
    if state == "CANCELLED" or (pilot and signalled and code != protocol.EXIT_REQUEUE):
        return Outcome(exit_code=None, signal=15, error=f"SLURM job {job} was cancelled outside coord", **common)
    if state == "OUT_OF_MEMORY":
        return Outcome(exit_code=code, error=f"SLURM job {job}: out of memory",
                       **{**common, "stderr": stderr + "\nout of memory (SLURM OUT_OF_MEMORY)"})
    if code is not None:
        return Outcome(exit_code=code, preempted=code == protocol.EXIT_REQUEUE and signalled, **common)
    if state in ("NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "GONE"):
        return Outcome(exit_code=None, lost=True, error=f"SLURM job {job} ended {state}", **common)
    return Outcome(exit_code=None, signal=9, error=f"SLURM job {job} ended {state} without an exit record", **common)
