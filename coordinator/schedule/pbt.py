"""Population-based training (Optuna has none; Ray Tune and NNI do), in generations.

The search's trials are the population. Each trial trains one segment of ``interval``
steps at a time: at the segment's end the runner checkpoints and exits 75, and the trial
waits at its study's barrier until every living member has finished the same segment.
Then the bottom quarter, by the objective at that step, *exploit*: each takes a copy of a
top-quarter member's newest checkpoint (the coordinator rewrites the checkpoint's
parameter key for its new parameters) and *explores*: the model's mutable parameters
(optimiser and regularisation, never the architecture) are the donor's, each multiplied
by 0.8 or 1.2 within the search space's bounds. Every exploit is a lineage entry
(generation, step, donor, parameters) in the trial's result and in the report.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coordinator import protocol
from coordinator.config.models import BUILTIN
from coordinator.schedule.plans import Pending, StudyPlan

# parameters that can change between segments without changing the model's shape
MUTABLE = {"xgboost": ("learning_rate", "subsample", "colsample_bytree", "min_child_weight", "reg_lambda",
                       "reg_alpha", "gamma"),
           "mlp": ("lr", "weight_decay", "dropout")}
QUANTILE = 0.25


def params_key(params: dict[str, Any]) -> str:
    """The checkpoint's parameter key, as runners/checkpoint.py computes it."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def rekey_checkpoint(data: bytes, params: dict[str, Any]) -> bytes:
    """The same checkpoint, valid for other parameters (its payload checksum unchanged)."""
    header, _, payload = data.partition(b"\n")
    magic, digest, _ = header.split(b" ")
    return b"%s %s %s\n" % (magic, digest, params_key(params).encode()) + payload


@dataclass
class Population:
    """One study's population: who waits at the barrier, and each member's value there."""

    plan: StudyPlan
    interval: int
    rng: random.Random
    waiting: dict[int, tuple[Pending, float]] = field(default_factory=dict)  # number -> (next attempt, value)


class PBT:
    def __init__(self, plans: list[StudyPlan], intervals: dict[str, int], trial_dir: Any, seed: int) -> None:
        # seeded per study: a resumed run replays the same decisions from the same values
        self.pops = {p.search.name: Population(p, intervals[p.search.name], random.Random(f"{seed}/{p.search.name}"))
                     for p in plans}
        self.trial_dir = trial_dir

    def stop_at(self, p: Pending) -> int | None:
        """Where the next segment of this trial ends; None for the last one (it runs to the
        end: nothing would be left to train after an exploit there)."""
        segments = sum(h.kind == "segment" for h in p.history)
        end = int((segments + 1) * self.pops[p.plan.search.name].interval)
        model = BUILTIN.get(p.plan.model or "")
        total = p.params.get(model.step_param) if model and model.step_param else None  # the steps in all
        return None if isinstance(total, (int, float)) and end >= total else end

    def arrived(self, p: Pending, value: float) -> None:
        self.pops[p.plan.search.name].waiting[p.number] = (p, value)

    def release(self, busy: set[str], event: Callable[..., None]) -> list[Pending]:
        """Members to start again: a whole generation once its barrier is complete (every
        member asked, none of the study's trials running or queued; ``busy`` names the
        studies with trials running or queued). Exploits are applied and recorded."""
        out: list[Pending] = []
        for name, pop in self.pops.items():
            plan = pop.plan
            if not pop.waiting or plan.asked < plan.search.n_trials or name in busy:
                continue
            ranked = sorted(pop.waiting.values(), key=lambda pv: pv[1],
                            reverse=plan.search.directions[0] == "maximize")
            k = max(1, int(len(ranked) * QUANTILE)) if len(ranked) >= 3 else 0  # members finish at their own length
            top, bottom = ranked[:k], {pv[0].number for pv in ranked[len(ranked) - k:]} if k else set()
            for p, _ in ranked:
                exploit = self._exploit(pop, p, top) if p.number in bottom else None
                if exploit is not None:
                    generation = sum(h.kind == "segment" for h in p.history)
                    p.lineage = [*p.lineage, {"generation": generation, **exploit}]
                    event("exploit", number=p.number, generation=generation, **exploit)
                out.append(p)
            pop.waiting.clear()
        return out

    def _exploit(self, pop: Population, p: Pending, top: list[tuple[Pending, float]]) -> dict[str, Any] | None:
        donor = pop.rng.choice(top)[0]
        source = sorted((self.trial_dir(donor.number) / "checkpoint").glob("step-*.ckpt"))
        if not source or not protocol.checkpoint_ok(source[-1].read_bytes()):
            return None
        params = self._explore(pop, donor.params)
        target = self.trial_dir(p.number) / "checkpoint"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        (target / source[-1].name).write_bytes(rekey_checkpoint(source[-1].read_bytes(), params))
        p.params = params
        return {"donor": donor.number, "step": int(source[-1].name[5:13]), "params": params}

    def _explore(self, pop: Population, donor: dict[str, Any]) -> dict[str, Any]:
        space, out = pop.plan.search.space, dict(donor)
        for name in MUTABLE.get(pop.plan.model or "", ()):
            param = space.params.get(name)
            if param is None or param.type not in ("float", "int") or name not in out:
                continue
            value = out[name] * pop.rng.choice((0.8, 1.2))
            low, high = param.low if param.low is not None else value, param.high if param.high is not None else value
            value = min(max(value, low), high)
            out[name] = int(round(value)) if param.type == "int" else value
        return out
