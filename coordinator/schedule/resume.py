"""Resuming a run whose coordinator died (``kill -9``, a power cut on the laptop, Ctrl-C).

The run directory is the source of truth. For every trial it holds trial.json (asked),
attempt-<k>/allocation.json (launched there) and result.json (committed). Resuming:

- a committed trial is left byte-for-byte as it is; Optuna is told its result again if
  the crash fell between the commit and the tell;
- the latest attempt of an uncommitted trial is re-sent to its host. The agent never
  starts an attempt twice (a claim file), so the request re-attaches to a trial still
  running, replays one that finished while the coordinator was down, and starts one that
  never started; an attempt whose process died unrecorded ends as killed and is retried
  with the same parameters, within the same retry budget;
- an attempt that a Ctrl-C stopped (its end seen, recorded ``interrupted``) is followed by
  the trial's next attempt at once, spending no retry: from its checkpoint, where the
  built-in runners wrote one on SIGTERM;
- a trial asked but never launched is launched; an Optuna trial that was asked but never
  recorded (a crash right after ``ask``) is failed, so no stale RUNNING trial remains
  (Optuna's heartbeat does not cover ask/tell).
"""

from __future__ import annotations

from coordinator.config.registry import RUNNABLE_CONNECTIONS
from coordinator.errors import StoreError
from coordinator.records import Allocation, TrialStatus
from coordinator.schedule.decide import FREE, Kind
from coordinator.schedule.loop import Coordinator
from coordinator.schedule.plans import Pending, history_entry


def recover(c: Coordinator) -> dict[str, int]:
    """Load a run's trials into a fresh coordinator before its loop starts."""
    store = c.store
    plans = {p.search.name: p for p in c.plans}
    events = store.events_read()
    ended = {(e["number"], e["attempt"]): e for e in events if e.get("event") == "ended"}
    # attempts a Ctrl-C (or SIGTERM) stopped: not failures; they spend no retry
    interrupted = {(e["number"], e["attempt"]) for e in events if e.get("event") == "interrupted"}
    for key in interrupted & set(ended):
        ended[key] = {**ended[key], "kind": Kind.INTERRUPTED.value}
    referenced: dict[str, set[int]] = {name: set() for name in plans}
    unfinished = {name: set(p.search.unfinished()) for name, p in plans.items()}
    counts = {"committed": 0, "reattached": 0, "relaunched": 0, "stale": 0}
    for rec in store.trials():
        plan = plans.get(rec.info.study)
        if plan is None:
            raise StoreError(f"{store.root}: trial {rec.number} belongs to study {rec.info.study!r}, "
                             f"which this run does not have ({', '.join(plans)})")
        number, optuna_number = rec.number, rec.info.optuna_number
        c.adopt(number)
        referenced[plan.search.name].add(optuna_number)
        result = rec.result
        if result is not None:
            counts["committed"] += 1
            if result.status != TrialStatus.CANCELLED:  # an interrupted trial's place in the budget goes back
                plan.asked += 1
            complete = result.status == TrialStatus.COMPLETE
            if optuna_number in unfinished[plan.search.name]:  # the crash fell between commit and tell
                plan.search.tell(optuna_number, result.values if complete else None,
                                 pruned=result.status == TrialStatus.PRUNED)
            c.note_committed(plan, result)
            continue
        plan.asked += 1
        attempts = store.attempts(number)
        last = max(attempts, default=1)
        stopped = (number, last) in interrupted and (number, last) in ended  # it ended: nothing to follow
        history = [history_entry(k, attempts[k], ended.get((number, k))) for k in attempts
                   if k < last or (stopped and k == last)]
        where = attempts.get(last, {})  # PBT may have changed the parameters; the attempt has them
        pending = Pending(number, last + 1 if stopped else last, plan, optuna_number,
                          where.get("params", rec.info.params), history=history,
                          avoid=frozenset(h.platform for h in history if Kind(h.kind) not in FREE),
                          lineage=where.get("lineage", []))
        plan.search.adopt(optuna_number)
        if last not in attempts or stopped:
            c.requeue(pending)
            counts["relaunched"] += 1
            continue
        where = attempts[last]
        platform = c.registry.platforms.get(where["platform"])
        if platform is None or platform.connection not in RUNNABLE_CONNECTIONS:
            c.lose(pending, where, "platform no longer in the registry")
            counts["relaunched"] += 1
            continue
        c.reattach(pending, Allocation.from_json(where), interrupted=(number, last) in interrupted)
        counts["reattached"] += 1
    for name, plan in plans.items():
        for optuna_number in sorted(unfinished[name] - referenced[name]):
            plan.search.tell(optuna_number, None)
            store.event("stale_trial_failed", study=name, optuna_number=optuna_number)
            counts["stale"] += 1
    store.event("resumed", **counts)
    return counts



