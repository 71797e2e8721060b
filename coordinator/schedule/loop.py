"""The Coordinator loop decides *when*: collect events, decide, launch, wait.

One thread owns all state. Each turn: refill free slots (retries first, then new
trials, asking Optuna only once the router has found a slot, so samplers see the latest
results), then block on the backend until an event or the nearest deadline. Every
committed result goes to the run store first, then to Optuna, then to trackers.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from coordinator import crashpoint, protocol
from coordinator.backends.base import Backend, EndEvent, MetricEvent
from coordinator.config.registry import Registry
from coordinator.errors import AuthError, DiskFull, HostError, HostKeyError, RoutingError
from coordinator.records import Allocation, Needs, Recipe, TrialStatus
from coordinator.schedule import decide
from coordinator.schedule.pbt import PBT
from coordinator.schedule.placement import Placement, RunningTrial
from coordinator.schedule.plans import Limits, Pending, Running, StudyPlan, history_entry
from coordinator.schedule.routing import Busy, Infeasible, Ledger, route
from coordinator.schedule.speed import Estimate, SpeedModel
from coordinator.store.checkpoints import CheckpointKeeper
from coordinator.store.files import disk_full, tail
from coordinator.store.rundir import RunStore
from coordinator.tracking.tracker import Snapshot, Tracker

log = logging.getLogger(__name__)
TICK_S = 0.25
BACKSTOP_S = 300.0  # a trial still running this long past its limit is cancelled by the coordinator
PRUNED_MARK = "pruned_step"  # a built-in runner's last report when it stopped on a prune request


class Coordinator:
    """Drives one run to the end. ``run()`` returns the summary; cleanup is in finally."""

    def __init__(self, store: RunStore, plans: list[StudyPlan], registry: Registry, backend: Backend,
                 limits: Limits, policy: decide.RetryPolicy, tracker: Tracker, runnable: tuple[str, ...],
                 clock: Callable[[], float] = time.monotonic, speed: SpeedModel | None = None) -> None:
        self.store, self.plans, self.registry, self.backend = store, plans, registry, backend
        self.limits, self.policy, self.tracker, self.runnable = limits, policy, tracker, runnable
        self.clock = clock
        self.speed = speed  # None: static rule order only
        self.placement = Placement(registry, speed) if speed is not None else None
        self.ledger = Ledger()
        self.retry_queue: list[Pending] = []
        self.running: dict[str, Running] = {}
        self.next_number = 0
        self.turn = 0
        self.start = clock()
        self.snap = Snapshot(total=sum(p.search.n_trials for p in plans), metric=plans[0].search.metrics[0])
        self.durations: list[float] = []
        self.stopping = False
        self.interrupted = False  # Ctrl-C: the trials it stops are left for ``coord resume``
        self.stop_signal: int | None = None  # SIGINT or SIGTERM received: stop at the next step
        self.force_stop = False  # a second one: do not wait for the trials to end
        self.down: dict[str, float] = {}  # platform -> monotonic time it may be tried again
        self.quarantined: dict[str, str] = {}  # platform -> why (a person must act)
        self.incapable: dict[tuple[str, str], str] = {}  # (model type, platform) -> why (e.g. no xgboost)
        self.checkpoints = CheckpointKeeper(store.trial_dir)
        self.pbt: PBT | None = None  # population-based training, when the search asks for it

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        restore = self._trap_signals()
        detached = False
        try:
            try:
                while self.stop_signal is None:
                    self._fill()
                    if not self.running and not self.retry_queue and not self._can_ask():
                        break
                    self._handle(self.backend.poll(self._wait_time()))
                    self._enforce_deadlines()
                    self._tick()
                    if (full := self.backend.disk_full()) is not None:  # met by a backend thread
                        raise full
            except KeyboardInterrupt:  # not in the main thread, or before the handler was set
                self.stop_signal = signal.SIGINT
            if self.stop_signal is not None:
                self._interrupt()
        except (DiskFull, OSError) as exc:
            # a full disk stops the coordinator as a crash would: nothing more can be recorded,
            # so the trials are neither cancelled nor committed but left running, detached,
            # for ``coord resume`` to re-attach to once space is freed
            full = disk_full(exc, run=self.store.root)
            if full is None:
                raise
            detached = True
            self.backend.detach()
            raise full from None
        finally:
            restore()
            if not detached:
                self.backend.close()
                self._drain(grace_s=0.0)
                self._tick()
        summary = {"interrupted": self.interrupted, **self.summary()}
        self.store.event("search_end", **summary)
        self.tracker.on_search_end(summary)
        return summary

    def _trap_signals(self) -> Callable[[], None]:
        """Ctrl-C and SIGTERM only set a flag the loop reads between steps: a stop never lands
        half-way through a commit or an Optuna write. A second one cuts the stop's grace short."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def stop(signum: int, frame: Any) -> None:
            self.force_stop = self.stop_signal is not None
            self.stop_signal = signum

        old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return restore

    def _interrupt(self) -> None:
        """Stop the running trials and leave them uncommitted for ``coord resume``."""
        self.interrupted = self.stopping = True
        self.store.event("stop_requested", signal=signal.Signals(self.stop_signal or signal.SIGINT).name)
        for r in list(self.running.values()):
            self.backend.cancel(r.handle, "cancelled")
        self._drain(grace_s=10.0)

    def _drain(self, grace_s: float) -> None:
        end = self.clock() + grace_s
        while self.running:
            events = self.backend.poll(max(0.0, min(0.2, end - self.clock())))
            self._handle(events)
            if not events and (self.clock() >= end or self.force_stop):
                for r in list(self.running.values()):  # the backend lost it: record, never drop
                    self._end(r, decide.Kind.CANCELLED, None, "coordinator stopped", 0.0)
                break

    def _can_ask(self) -> bool:
        if self.stopping:
            return False
        if self.limits.timeout_s is not None and self.clock() - self.start >= self.limits.timeout_s:
            return False
        return any(p.asked < p.search.n_trials for p in self.plans)

    def _wait_time(self) -> float:
        now = self.clock()
        wake = now + TICK_S
        for r in self.running.values():
            if r.deadline is not None:
                wake = min(wake, r.deadline)
        for p in self.retry_queue:
            wake = min(wake, p.not_before)
        return max(0.0, wake - now)

    # -- placing work --------------------------------------------------------------------
    def _fill(self) -> None:
        if self.pbt is not None:  # a generation whose barrier is complete goes on
            busy = {r.pending.plan.search.name for r in self.running.values()} | \
                {p.plan.search.name for p in self.retry_queue}
            for p in self.pbt.release(busy, self.store.event):
                p.not_before = self.clock()
                self.retry_queue.append(p)
        while len(self.running) < self.limits.parallel:
            if not self._place_retry() and not self._place_new():
                return

    def host_failed(self, platform: str, exc: HostError | str) -> None:
        """Route around a failed host: for ``--host-retry`` seconds if it may come back by
        itself, for the rest of the run if a person must act (unknown or changed host key,
        refused login)."""
        reason = str(exc)
        if isinstance(exc, (HostKeyError, AuthError)):
            self.quarantined[platform] = reason
            self.store.event("host_quarantined", platform=platform, reason=reason)
        else:
            self.down[platform] = self.clock() + self.limits.host_retry_s
            self.store.event("host_down", platform=platform, reason=reason, retry_in_s=self.limits.host_retry_s)
        log.warning("%s", reason)

    def _down_now(self) -> set[str]:
        now = self.clock()
        for platform in [p for p, until in self.down.items() if until <= now]:
            del self.down[platform]  # probe it again with the next trial
            self.store.event("host_probe", platform=platform)
        return set(self.down)

    def _route(self, needs: Needs, avoid: frozenset[str] = frozenset()) -> Allocation | None:
        # retries keep their way around the host that failed them, even onto an uncalibrated one
        down = self._down_now() | (self._exploring(needs) if not avoid else set())
        refused = {**self.quarantined, **{p: why for (m, p), why in self.incapable.items() if m == needs.model_type}}
        decision = route(needs, self.registry, self.ledger, down=down, runnable=self.runnable,
                         avoid=avoid, quarantined=refused, estimates=self._estimates(needs))
        if isinstance(decision, Infeasible):
            raise RoutingError(needs.model_type, decision.reasons)
        if isinstance(decision, Busy):
            self.snap.waiting_reason = decision.reason
            return None
        self.snap.waiting_reason = ""
        return decision

    def _running_view(self) -> list[RunningTrial]:
        return [RunningTrial(r.handle.allocation.platform, r.pending.plan.needs.model_type, r.started)
                for r in self.running.values()]

    def _exploring(self, needs: Needs) -> set[str]:
        if self.placement is None:
            return set()
        return self.placement.exploring(needs.model_type, self._running_view())

    def _estimates(self, needs: Needs) -> dict[str, Estimate] | None:
        if self.placement is None:
            return None
        return self.placement.estimates(needs.model_type, self._running_view(), self.ledger, self.clock())

    def _place_retry(self) -> bool:
        now = self.clock()
        for p in sorted(self.retry_queue, key=lambda x: x.not_before):
            if p.not_before > now:
                return False
            alloc = self._route(p.plan.needs, p.avoid)
            if alloc is None:
                return False
            self.retry_queue.remove(p)
            self._launch(p, alloc)
            return True
        return False

    def _place_new(self) -> bool:
        if not self._can_ask():
            return False
        for plan in self._study_order():
            alloc = self._route(plan.needs)
            if alloc is None:
                continue
            self.turn = (self.plans.index(plan) + 1) % len(self.plans)
            optuna_number, params = plan.search.ask()
            crashpoint.reached("after_ask")
            plan.asked += 1
            number = self.next_number
            self.next_number += 1
            pending = Pending(number, 1, plan, optuna_number, params)
            self.store.record_trial(number, {"study": plan.search.name, "optuna_number": optuna_number,
                                             "model": plan.model, "params": params,
                                             "seed": plan.trial_seed(number)})
            self.store.event("asked", number=number, study=plan.search.name, params=params)
            crashpoint.reached("after_record")
            self._launch(pending, alloc)
            return True
        return False

    def _study_order(self) -> list[StudyPlan]:
        """Searches with budget left: round robin, or by sufferage with learned speeds."""
        n = len(self.plans)
        order = [self.plans[(self.turn + i) % n] for i in range(n)]
        order = [p for p in order if p.asked < p.search.n_trials]
        if self.placement is None or len(order) < 2:
            return order
        running, now, placement = self._running_view(), self.clock(), self.placement
        return sorted(order, key=lambda plan: placement.sufferage(plan.needs.model_type, running, self.ledger, now),
                      reverse=True)  # stable: ties keep round robin

    def _recipe(self, p: Pending) -> Recipe:
        """The attempt's recipe: a pure function of the trial (no path, no host), so a
        resumed coordinator rebuilds exactly the recipe it launched and a rerun replays it."""
        return Recipe(number=p.number, study=p.plan.search.name, params=p.params, seed=p.plan.trial_seed(p.number),
                      model=p.plan.model, command=p.plan.command, data=p.plan.data, metrics=p.plan.search.metrics,
                      checkpoint_every_s=self.limits.checkpoint_every_s,
                      stop_at=self.pbt.stop_at(p) if self.pbt is not None and p.plan.model else None,
                      timeout_s=self.limits.trial_timeout_s,
                      decisions=p.plan.decisions.to_json() if p.plan.model else None)

    def _launch(self, p: Pending, alloc: Allocation, reattach: bool = False, interrupted: bool = False) -> None:
        """Start an attempt, or (``reattach``, after a restart) follow the one already running
        or finished there: the agent never starts one attempt twice."""
        recipe = self._recipe(p)
        if not reattach:
            self.store.record_attempt(p.number, p.attempt, {"platform": alloc.platform, "slot": alloc.slot,
                                                            "gpu": alloc.gpu, "reason": alloc.reason,
                                                            "params": p.params, "lineage": p.lineage}, recipe)
        self.ledger.take(alloc, p.number, p.plan.needs.memory_gb)
        try:
            handle = self.backend.launch(recipe, p.attempt, alloc)
        except HostError as exc:
            self.ledger.release(alloc, p.plan.needs.memory_gb)
            self.host_failed(alloc.platform, exc)
            if reattach:  # it may have run there: count the attempt as lost, retry elsewhere
                self.lose(p, {"platform": alloc.platform, "slot": alloc.slot, "gpu": alloc.gpu}, str(exc))
                return
            p.not_before = self.clock()  # nothing ran: the same attempt again, elsewhere or later
            self.retry_queue.append(p)
            return
        now = self.clock()
        # the host enforces the limit on the trial's own run time; this is the backstop for a
        # host that does not (the coordinator may read output late, so it never acts first)
        t = self.limits.trial_timeout_s
        deadline = now + t + max(BACKSTOP_S, t) if t else None
        self.running[handle.key] = Running(p, handle, now, deadline, interrupted=interrupted)
        self.store.event("reattached" if reattach else "launched", number=p.number, attempt=p.attempt,
                         platform=alloc.platform, slot=alloc.slot, gpu=alloc.gpu, reason=alloc.reason,
                         mono=time.monotonic())
        crashpoint.reached("after_launch")
        self.tracker.on_trial_start(p.number, {"study": p.plan.search.name, "params": p.params,
                                               "attempt": p.attempt, "platform": alloc.platform})

    def lose(self, p: Pending, where: dict[str, Any], why: str) -> None:
        """An attempt that cannot be followed after a restart: lost; retried elsewhere."""
        self.store.event("ended", number=p.number, attempt=p.attempt, kind=decide.Kind.LOST.value,
                         exit_code=None, signal=None, duration_s=0.0, reason=why)
        p.history.append(history_entry(p.attempt, where, None))
        p.attempt, p.avoid = p.attempt + 1, p.avoid | {where["platform"]}
        self.retry_queue.append(p)

    # -- events --------------------------------------------------------------------------
    def _handle(self, events: list[MetricEvent | EndEvent]) -> None:
        for ev in events:
            r = self.running.get(ev.handle.key)
            if r is None:
                log.warning("event for unknown attempt %s ignored", ev.handle.key)
                continue
            if isinstance(ev, MetricEvent):
                r.metrics.update(ev.values)
                crashpoint.reached("mid_run")
                self.tracker.on_report(r.pending.number, ev.values)
                self._maybe_prune(r, ev.values)
                continue
            crashpoint.reached("after_end")
            err = tail(self.store.attempt_dir(r.pending.number, r.pending.attempt) / "stderr")
            kind = decide.end_kind(ev.outcome, r.pending.plan.search.metrics, r.metrics, err,
                                     prune_requested=r.pruned, pruned_mark=PRUNED_MARK in r.metrics,
                                     migrating=r.migrating is not None,
                                     segment="segment_step" in r.metrics and self.pbt is not None,
                                     interrupted=r.interrupted)
            self.store.event("ended", number=r.pending.number, attempt=r.pending.attempt, kind=kind.value,
                             exit_code=ev.outcome.exit_code, signal=ev.outcome.signal,
                             duration_s=round(ev.outcome.duration_s, 4), mono=ev.mono)
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
        refused = self._down_now() | set(self.quarantined) | \
            {p for (m, p) in self.incapable if m == plan.needs.model_type}
        candidates = [c.platform for c in self.registry.rule_for(plan.needs.model_type).candidates
                      if c.platform not in refused and self.registry.platforms[c.platform].connection in self.runnable]
        target = self.placement.migration_target(plan.needs.model_type, alloc.platform, candidates, self.ledger)
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
        if kind in (decide.Kind.MIGRATED, decide.Kind.INTERRUPTED):  # free: the same trial goes on
            avoid = p.avoid | {alloc.platform} if kind == decide.Kind.MIGRATED else p.avoid
            self.retry_queue.append(Pending(p.number, p.attempt + 1, p.plan, p.optuna_number, p.params,
                                            self.clock(), avoid, p.history, p.lineage))
            return
        if kind == decide.Kind.SEGMENT and self.pbt is not None:  # waits for its generation
            self.pbt.arrived(Pending(p.number, p.attempt + 1, p.plan, p.optuna_number, p.params,
                                     history=p.history, lineage=p.lineage), r.metrics[p.plan.search.metrics[0]])
            return
        if self.interrupted and kind == decide.Kind.CANCELLED:
            # not committed: ``coord resume`` re-attaches to the ended attempt and retries it
            # (a built-in trial checkpointed on SIGTERM and continues from there)
            self.store.event("interrupted", number=p.number, attempt=p.attempt)
            return
        delay = None if self.stopping else self.policy.delay(kind, p.attempt - p.free_attempts)
        if delay is not None:
            self.snap.retries += 1
            self.store.event("retry", number=p.number, attempt=p.attempt + 1, delay_s=round(delay, 3),
                             reason=kind.value)
            self.retry_queue.append(Pending(p.number, p.attempt + 1, p.plan, p.optuna_number, p.params,
                                             self.clock() + delay, p.avoid | {alloc.platform}, p.history,
                                             p.lineage))
            return
        self._commit(p, r, kind, tail, duration)

    def _commit(self, p: Pending, r: Running, kind: decide.Kind, tail: str, duration: float) -> None:
        status = decide.final_status(kind)
        metrics = p.plan.search.metrics
        r.metrics.pop(PRUNED_MARK, None)
        values = [r.metrics[m] for m in metrics] if status == TrialStatus.COMPLETE else None
        if status == TrialStatus.PRUNED and metrics[0] in r.metrics:
            values = [r.metrics[metrics[0]]]  # the last reported value
        platform = self.registry.platforms[r.handle.allocation.platform]
        result = {"study": p.plan.search.name, "optuna_number": p.optuna_number, "model": p.plan.model,
                  "status": status.value, "kind": kind.value, "values": values, "metrics": r.metrics,
                  "params": p.params, "seed": p.plan.trial_seed(p.number), "attempt": p.attempt,
                  **({"lineage": p.lineage} if self.pbt is not None else {}),
                  "attempts": p.history, "platform": platform.key, "host": platform.host or "localhost",
                  "duration_s": round(duration, 4),
                  "total_s": round(sum(h["duration_s"] for h in p.history), 4),
                  "error": "" if status == TrialStatus.COMPLETE else
                  decide.explain(kind, metrics, r.metrics, tail, self._printed(p, kind))[-2000:]}
        if not self.store.commit_result(p.number, result):
            log.warning("trial %d already has a committed result; duplicate ignored", p.number)
            return
        crashpoint.reached("after_commit")
        p.plan.search.tell(p.optuna_number, values if status == TrialStatus.COMPLETE else None,
                           pruned=status == TrialStatus.PRUNED)
        crashpoint.reached("after_tell")
        self.durations.append(duration)
        self.snap.add(result, p.number, p.plan.search.better)
        self.checkpoints.ended(p.plan.search.name, p.number, values[0] if values and status == TrialStatus.COMPLETE
                               else None, p.plan.search.better)
        self.backend.discard(p.number, {h["platform"] for h in p.history})
        self.tracker.on_trial_end(p.number, result)

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

    # -- reporting -----------------------------------------------------------------------
    def _tick(self) -> None:
        s = self.snap
        s.running = len(self.running)
        s.elapsed_s = self.clock() - self.start
        s.busy = {k: (self.ledger.busy(k), p.max_concurrent_jobs) for k, p in self.registry.platforms.items()
                  if p.connection in self.runnable}
        remaining = s.total - s.done
        if self.durations and self.limits.parallel:
            mean = sum(self.durations) / len(self.durations)
            s.eta_s = remaining * mean / self.limits.parallel
        self.tracker.on_tick(s)

    def summary(self) -> dict[str, Any]:
        s = self.snap
        return {"complete": s.complete, "failed": s.failed, "cancelled": s.cancelled, "pruned": s.pruned,
                "retries": s.retries,
                "trials": s.done, "best_value": s.best_value, "best_number": s.best_number,
                "metric": s.metric, "elapsed_s": round(self.clock() - self.start, 3),
                "learned_speed_s": self.speed.table() if self.speed else {}}

