"""The loop's handling of what attempts report: metrics to the pruner (and placement), an
attempt's end to its classification (``decide.end_kind``), the trial's fate after it
(``decide.after_attempt``), and the one commit of a trial's result: the run store first,
then Optuna, then the trackers. A mixin of ``Coordinator``: it shares the loop's state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from coordinator import crashpoint, protocol, provenance
from coordinator.backends.base import Backend, EndEvent, MetricEvent
from coordinator.config.registry import Registry
from coordinator.errors import HostError
from coordinator.records import TrialStatus
from coordinator.schedule import decide
from coordinator.schedule.finish import build_result
from coordinator.schedule.hoststate import HostState
from coordinator.schedule.pbt import PBT
from coordinator.schedule.placement import Placement
from coordinator.schedule.plans import Limits, Pending, Running, history_entry
from coordinator.schedule.routing import Ledger
from coordinator.schedule.sharing import PREEMPTED
from coordinator.schedule.speed import SpeedModel
from coordinator.store.checkpoints import CheckpointKeeper
from coordinator.store.files import last_lines, tail
from coordinator.store.rundir import RunStore
from coordinator.store.usage import Meter
from coordinator.tracking.tracker import Snapshot, Tracker

log = logging.getLogger("coordinator.schedule.loop")


class AttemptEvents:
    store: RunStore
    registry: Registry
    backend: Backend
    tracker: Tracker
    policy: decide.RetryPolicy
    limits: Limits
    runnable: tuple[str, ...]
    clock: Callable[[], float]
    running: dict[str, Running]
    retry_queue: list[Pending]
    ledger: Ledger
    hosts: HostState
    placement: Placement | None
    speed: SpeedModel | None
    pbt: PBT | None
    snap: Snapshot
    durations: list[float]
    checkpoints: CheckpointKeeper
    meter: Meter
    stopping: bool
    interrupted: bool

    if TYPE_CHECKING:  # provided by Coordinator
        def host_failed(self, platform: str, exc: HostError | str) -> None: ...

    def _handle(self, events: list[MetricEvent | EndEvent]) -> None:
        for ev in events:
            r = self.running.get(ev.handle.key)
            if r is None:
                log.warning("event for unknown attempt %s ignored", ev.handle.key)
                continue
            if isinstance(ev, MetricEvent):
                values, control = protocol.split_control(ev.values)
                r.metrics.update(values)
                r.control.update(control)
                crashpoint.reached("mid_run")
                if values:
                    self.tracker.on_report(r.pending.number, values)
                    self._maybe_prune(r, values)
                continue
            crashpoint.reached("after_end")
            # the tail came with the end (the agent's); else the run directory's copy
            err = last_lines(ev.outcome.stderr) if ev.outcome.stderr else \
                tail(self.store.attempt_dir(r.pending.number, r.pending.attempt) / "stderr")
            kind = decide.end_kind(ev.outcome, r.pending.plan.search.metrics, r.metrics, err,
                                     prune_requested=r.pruned, pruned_mark="pruned_step" in r.control,
                                     migrating=r.migrating is not None,
                                     segment="segment_step" in r.control and self.pbt is not None,
                                     interrupted=r.interrupted)
            if kind == decide.Kind.MIGRATED and r.migrating == PREEMPTED:  # another search's priority
                kind = decide.Kind.PREEMPTED
            self.store.event("ended", number=r.pending.number, attempt=r.pending.attempt, kind=kind.value,
                             exit_code=ev.outcome.exit_code, signal=ev.outcome.signal,
                             duration_s=round(ev.outcome.duration_s, 4), mono=ev.mono)
            self.meter.ended(r.handle.allocation.platform, r.handle.allocation.gpu, round(ev.outcome.duration_s, 4))
            self._end(r, kind, ev.outcome.exit_code, err, ev.outcome.duration_s)

    def _maybe_prune(self, r: Running, values: dict[str, float]) -> None:
        """An intermediate report (``step`` plus the objective) goes to the pruner; if it says
        stop, the backend asks the trial to stop at its next step."""
        search = r.pending.plan.search
        objective = search.metrics[0]
        if r.pruned or "step" not in values or objective not in values or not math.isfinite(values[objective]):
            return
        step, previous, r.last_step = int(values["step"]), r.last_step, int(values["step"])
        if search.report(r.pending.optuna_number, step, values[objective]):
            r.pruned = True
            self.store.event("prune", number=r.pending.number, step=step, value=values[objective])
            self.backend.stop(r.handle)
            return
        if r.pending.plan.model and r.pending.plan.decisions.due(previous, step):
            self.backend.proceed(r.handle, step)  # the runner waits for this at a rung
        self._maybe_migrate(r, step)

    def _maybe_migrate(self, r: Running, step: int) -> None:
        """A trial promoted past its first rung moves to a faster host with a free slot: it
        checkpoints on SIGTERM, exits 75, and its next attempt resumes there."""
        plan, alloc = r.pending.plan, r.handle.allocation
        if self.placement is None or r.migrating or plan.promote_step is None or step < plan.promote_step \
                or r.pending.migrations:
            return
        refused = self.hosts.down_now() | set(self.hosts.refused(plan.needs.model_type))
        candidates = [c.platform for c in self.registry.rule_for(plan.needs.model_type).candidates
                      if c.platform not in refused and self.registry.platforms[c.platform].connection in self.runnable]
        target = self.placement.migration_target(plan.needs.model_type, alloc.platform, candidates, self.ledger,
                                                 plan.needs.procs)
        if target is not None:
            r.migrating = target
            self.store.event("migrate", number=r.pending.number, step=step, source=alloc.platform, target=target)
            self.backend.cancel(r.handle, "migrate")

    def _end(self, r: Running, kind: decide.Kind, exit_code: int | None, tail: str, duration: float) -> None:
        p = r.pending
        del self.running[r.handle.key]
        self.ledger.release(r.handle.allocation, p.plan.needs.memory_gb)
        alloc = r.handle.allocation
        p.history.append(history_entry(p.attempt, {"platform": alloc.platform, "slot": alloc.slot, "gpu": alloc.gpu},
                                       {"kind": kind.value, "exit_code": exit_code, "duration_s": round(duration, 4)}))
        if kind == decide.Kind.LOST:
            self.host_failed(alloc.platform, f"{alloc.platform}: lost the connection during trial {p.number}")
        if kind == decide.Kind.OK and self.speed is not None and not p.free_attempts:  # whole trials only
            self.speed.observe(p.plan.needs.model_type, alloc.platform, duration)
        then = decide.after_attempt(kind, p.attempt - p.free_attempts, self.policy, stopping=self.stopping,
                                    interrupted=self.interrupted, pbt=self.pbt is not None)
        avoid = p.avoid | {alloc.platform} if then.avoid_host else p.avoid
        following = Pending(p.number, p.attempt + 1, p.plan, p.optuna_number, p.params, self.clock() + then.delay_s,
                            avoid, p.history, p.lineage)
        if then.next == decide.Next.CONTINUE:
            self.retry_queue.append(following)
        elif then.next == decide.Next.SEGMENT and self.pbt is not None:
            self.pbt.arrived(following, r.metrics[p.plan.search.metrics[0]])
        elif then.next == decide.Next.HOLD:
            self.store.event("interrupted", number=p.number, attempt=p.attempt)
        elif then.next == decide.Next.RETRY:
            self.snap.retries += 1
            self.store.event("retry", number=p.number, attempt=p.attempt + 1, delay_s=round(then.delay_s, 3),
                             reason=kind.value)
            self.retry_queue.append(following)
        else:
            self._commit(p, r, kind, tail, duration)

    def _commit(self, p: Pending, r: Running, kind: decide.Kind, tail: str, duration: float) -> None:
        alloc = r.handle.allocation
        seeds = {"trial": p.plan.trial_seed(p.number), "sampler": p.plan.seed,
                 "split": int((p.plan.data or {}).get("split_seed", 0)) if p.plan.data else None}
        result = build_result(p, r.metrics, kind, tail, duration, self.registry.platforms[alloc.platform],
                              self.pbt is not None, self._printed(p, kind), self.limits.trial_timeout_s,
                              provenance.for_result(self.hosts.facts(alloc.platform), alloc.gpu, seeds))
        if not self.store.commit_result(result):
            log.warning("trial %d already has a committed result; duplicate ignored", p.number)
            return
        crashpoint.reached("after_commit")
        complete = result.status == TrialStatus.COMPLETE
        p.plan.search.tell(p.optuna_number, result.values if complete else None,
                           pruned=result.status == TrialStatus.PRUNED)
        crashpoint.reached("after_tell")
        self.durations.append(duration)
        self.snap.add(result, p.plan.search.better)
        self.checkpoints.ended(p.plan.search.name, p.number, result.value if complete else None,
                               p.plan.search.better)
        self.backend.discard(p.number, {h.platform for h in p.history})
        self.tracker.on_trial_end(result)

    def _printed(self, p: Pending, kind: decide.Kind) -> tuple[str, ...]:
        """Metric-like names in the output of an attempt that did not report its objective."""
        if kind != decide.Kind.NO_METRIC:
            return ()
        path = self.store.attempt_dir(p.number, p.attempt) / "stdout"
        return tuple(protocol.names_seen(tail(path, lines=2000)))

    def _enforce_deadlines(self) -> None:
        now = self.clock()
        for r in list(self.running.values()):
            if r.deadline is not None and now >= r.deadline:
                r.deadline = None  # cancel once; the EndEvent follows
                self.store.event("timeout", number=r.pending.number, attempt=r.pending.attempt)
                self.backend.cancel(r.handle, "timeout")

