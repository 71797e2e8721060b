"""The Coordinator loop decides *when*: collect events, decide, launch, wait.

One thread owns all state. Each turn: refill free slots (retries first, then new
trials, asking Optuna only once the router has found a slot, so samplers see the latest
results), then block on the backend until an event or the nearest deadline. Every
committed result goes to the run store first, then to Optuna, then to trackers.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from coordinator import crashpoint
from coordinator.backends.base import Backend
from coordinator.config.registry import Registry
from coordinator.errors import DiskFull, HostError, RoutingError, SlotTaken
from coordinator.records import Allocation, Needs, Recipe, Result, TrialInfo, TrialStatus
from coordinator.schedule import decide
from coordinator.schedule.events import AttemptEvents
from coordinator.schedule.guards import Guards
from coordinator.schedule.hoststate import HostState
from coordinator.schedule.pbt import PBT
from coordinator.schedule.placement import Placement, RunningTrial
from coordinator.schedule.plans import Limits, Pending, Running, StudyPlan, history_entry
from coordinator.schedule.routing import Busy, Infeasible, Ledger, route
from coordinator.schedule.sharing import SharedHosts
from coordinator.schedule.signals import trap_stop_signals
from coordinator.schedule.speed import Estimate, SpeedModel
from coordinator.store.checkpoints import CheckpointKeeper
from coordinator.store.files import disk_full
from coordinator.store.rundir import RunStore
from coordinator.store.usage import Meter, run_usage
from coordinator.tracking.tracker import Snapshot, Tracker

log = logging.getLogger(__name__)
TICK_S = 0.25
BACKSTOP_S = 300.0  # a trial still running this long past its limit is cancelled by the coordinator


class Coordinator(AttemptEvents, Guards, SharedHosts):
    """Drives one run to the end. ``run()`` returns the summary; cleanup is in finally."""

    def __init__(self, store: RunStore, plans: list[StudyPlan], registry: Registry, backend: Backend,
                 limits: Limits, policy: decide.RetryPolicy, tracker: Tracker, runnable: tuple[str, ...],
                 clock: Callable[[], float] = time.monotonic, speed: SpeedModel | None = None,
                 pbt: PBT | None = None) -> None:
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
        self.wall0 = time.time()  # wall time = wall0 + (clock() - start): a virtual clock moves it too
        self.closed: set[str] = set()  # platforms outside their availability windows now
        self.snap = Snapshot(total=sum(p.search.n_trials for p in plans), metric=plans[0].search.metrics[0])
        self.durations: list[float] = []
        self.stopping = False
        self.interrupted = False  # Ctrl-C: the trials it stops are left for ``coord resume``
        self.stop_signal: int | None = None  # SIGINT or SIGTERM received: stop at the next step
        self.force_stop = False  # a second one: do not wait for the trials to end
        self.hosts = HostState(clock, limits.host_retry_s, self._host_event)
        self.checkpoints = CheckpointKeeper(store.trial_dir)
        self.pbt = pbt  # population-based training, when the search asks for it
        registry_json = store.config.get("registry") or {}
        self.ended_by: str | None = None  # the budget or goal that ended the search
        self.hard_stopped = False  # --hard: the running trials were stopped for coord resume
        self.budget_warned = False  # 80% of a budget used: said once
        self.meter = Meter(registry_json.get("platforms") or {}, str(registry_json.get("currency") or ""),
                           run_usage(store, live=False).total)  # a resumed run's earlier attempts count

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        restore = self._trap_signals()
        detached = False
        try:
            try:
                self._windows()  # a platform closed at the start takes no first trial
                while self.stop_signal is None:
                    self._share()
                    self._fill()
                    self._publish_waiting()
                    if not self.running and not self.retry_queue and not self._can_ask():
                        break
                    self._handle(self.backend.poll(self._wait_time()))
                    self._enforce_deadlines()
                    self._tick()
                    self._windows()
                    if self.limits.budget.any and self.ended_by is None:
                        self._check_budget()
                    if self.hard_stopped:
                        break
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
        summary = {"interrupted": self.interrupted, "ended_by": self.ended_by, "stopped_hard": self.hard_stopped,
                   **self.summary()}
        self.store.event("search_end", **summary)
        self.tracker.on_search_end(summary)
        return summary

    def _trap_signals(self) -> Callable[[], None]:
        """Ctrl-C and SIGTERM only set a flag the loop reads between steps: a stop never lands
        half-way through a commit or an Optuna write. A second one cuts the stop's grace short."""
        def stop(signum: int) -> None:
            self.force_stop = self.stop_signal is not None
            self.stop_signal = signum
        return trap_stop_signals(stop)

    def _interrupt(self) -> None:
        """Stop the running trials and leave them uncommitted for ``coord resume``."""
        self._stop_running(signal.Signals(self.stop_signal or signal.SIGINT).name)

    def _stop_running(self, why: str) -> None:
        """Ctrl-C, SIGTERM or a --hard budget: the running trials stop (built-in runners
        checkpoint) and are left uncommitted, spending no retry, for ``coord resume``."""
        self.interrupted = self.stopping = True
        self.store.event("stop_requested", signal=why)
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
        if self.stopping or self.ended_by is not None:
            return False
        if self.limits.budget.any:
            self._check_budget()
            if self.ended_by is not None:
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
            if p.not_before > now:  # one due now waits for a slot: a trial's end wakes the poll (no spin)
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

    # -- what the run's set-up tells the loop (pre-flight, resume) -------------------------
    def host_failed(self, platform: str, exc: HostError | str) -> None:
        """Route around a failed host (see ``hoststate.py``)."""
        self.hosts.failed(platform, exc)

    def mark_incapable(self, model_type: str, platform: str, why: str, **fields: Any) -> None:
        """``platform`` cannot run ``model_type`` (its Python lacks the library): none of its trials go there."""
        self.hosts.mark_incapable(model_type, platform, why, **fields)

    def note_host(self, platform: str, facts: Callable[[], dict[str, Any] | None]) -> None:
        """What the pre-flight probe of ``platform`` found (``provenance.host_facts``)."""
        self.hosts.note_facts(platform, facts)

    def share_gpus(self, platform: str, busy: set[int]) -> None:
        """GPUs of ``platform`` that other users' processes hold: no trial gets them."""
        self.ledger.foreign_gpus[platform] = busy

    def adopt(self, number: int) -> None:
        """A resumed run holds trial ``number``: new trials are numbered after it."""
        self.next_number = max(self.next_number, number + 1)

    def note_committed(self, plan: StudyPlan, result: Result) -> None:
        """A resumed run's committed result: counted, and its checkpoint kept if it is a best."""
        self.snap.add(result, plan.search.better)
        if result.status == TrialStatus.COMPLETE and result.value is not None:
            self.checkpoints.note(plan.search.name, result.number, result.value, plan.search.better)

    def requeue(self, p: Pending) -> None:
        """A resumed trial whose next attempt starts when a slot frees."""
        self.retry_queue.append(p)

    def reattach(self, p: Pending, alloc: Allocation, interrupted: bool) -> None:
        """A resumed trial's latest attempt: follow it where it runs (or ran)."""
        self._launch(p, alloc, reattach=True, interrupted=interrupted)

    def _route(self, needs: Needs, avoid: frozenset[str] = frozenset()) -> Allocation | None:
        # retries keep their way around the host that failed them, even onto an uncalibrated one
        down = self.hosts.down_now() | self.closed | (self._exploring(needs) if not avoid else set())
        refused = self.hosts.refused(needs.model_type)
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
            self.store.record_trial(TrialInfo(number, plan.search.name, optuna_number, plan.model, params,
                                              plan.trial_seed(number)))
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
                      decisions=p.plan.decisions.to_json() if p.plan.model else None, compare=p.plan.compare,
                      procs=p.plan.needs.procs)

    def _launch(self, p: Pending, alloc: Allocation, reattach: bool = False, interrupted: bool = False) -> None:
        """Start an attempt, or (``reattach``, after a restart) follow the one already running
        or finished there: the agent never starts one attempt twice."""
        recipe = self._recipe(p)
        if not reattach:
            self.store.record_attempt(p.number, p.attempt, {**alloc.to_json(), "params": p.params,
                                                            "lineage": p.lineage}, recipe)
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
        except SlotTaken:  # another search was first (slot leases): nothing ran; the router knows now
            self.ledger.release(alloc, p.plan.needs.memory_gb)
            self._share()
            p.not_before = self.clock()
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
        now = self.clock()
        s.used = self.meter.line((r.handle.allocation.platform, r.handle.allocation.gpu, now - r.started)
                                 for r in self.running.values())
        self.tracker.on_tick(s)

    def summary(self) -> dict[str, Any]:
        s = self.snap
        return {"complete": s.complete, "failed": s.failed, "cancelled": s.cancelled, "pruned": s.pruned,
                "retries": s.retries,
                "trials": s.done, "best_value": s.best_value, "best_number": s.best_number,
                "metric": s.metric, "elapsed_s": round(self.clock() - self.start, 3),
                "learned_speed_s": self.speed.table() if self.speed else {}}

