import random

import pytest

from coordinator.records import Outcome
from coordinator.schedule.decide import Kind, RetryPolicy, classify, end_kind

OBJ = ("auc",)


@pytest.mark.parametrize(("outcome", "metrics", "tail", "kind"), [
    (Outcome(0), {"auc": 0.7}, "", Kind.OK),
    (Outcome(0), {}, "", Kind.NO_METRIC),
    (Outcome(0), {"auc": float("nan")}, "", Kind.NOT_FINITE),
    (Outcome(75), {}, "", Kind.REQUEUE),
    (Outcome(78), {}, "", Kind.PERMANENT),
    (Outcome(127), {}, "", Kind.PERMANENT),
    (Outcome(1), {}, "Traceback ... MemoryError", Kind.OOM),
    (Outcome(1), {}, "boom", Kind.CRASHED),
    (Outcome(None, signal=9), {}, "", Kind.KILLED),
    (Outcome(None, signal=15, timed_out=True), {}, "", Kind.TIMEOUT),
    (Outcome(None, signal=15, cancelled=True), {}, "", Kind.CANCELLED),
])
def test_classify(outcome: Outcome, metrics: dict[str, float], tail: str, kind: Kind) -> None:
    assert classify(outcome, OBJ, metrics, tail) == kind


def test_retry_budget_and_backoff_schedule() -> None:
    policy = RetryPolicy(max_retries=3, base_s=1.0, factor=2.0, cap_s=3.0, rng=random.Random(1))
    delays = [policy.delay(Kind.CRASHED, a) for a in (1, 2, 3, 4)]
    assert delays[3] is None  # 1 + 3 attempts, then stop
    for d, ceiling in zip(delays[:3], (1.0, 2.0, 3.0), strict=True):
        assert d is not None and ceiling / 2 <= d <= ceiling
    assert policy.delay(Kind.PERMANENT, 1) is None
    assert policy.delay(Kind.TIMEOUT, 1) is None
    assert policy.delay(Kind.REQUEUE, 1) == 0.0
    assert RetryPolicy(max_retries=0).delay(Kind.CRASHED, 1) is None


def _end(outcome: Outcome, metrics: dict[str, float], **asked: bool) -> Kind:
    flags = {"prune_requested": False, "pruned_mark": False, "migrating": False, "segment": False,
             "interrupted": False, **asked}
    return end_kind(outcome, OBJ, metrics, "", **flags)


def test_a_finished_trial_is_complete_whatever_was_asked_too_late() -> None:
    done = Outcome(0, cancelled=True)
    assert _end(done, {"auc": 0.7}) == Kind.OK  # a cancel that came after the end
    assert _end(Outcome(0), {"auc": 0.7}, prune_requested=True) == Kind.OK  # a late prune (a replay)
    assert _end(Outcome(0), {"auc": 0.7}, prune_requested=True, pruned_mark=True) == Kind.PRUNED
    assert _end(Outcome(None, signal=15), {"auc": 0.6}, prune_requested=True) == Kind.PRUNED  # a script killed
    assert _end(Outcome(0, timed_out=True), {"auc": 0.7}) == Kind.TIMEOUT  # over its time: not complete


def test_interruptions_moves_and_segments_spend_no_retry() -> None:
    assert _end(Outcome(75), {}, interrupted=True) == Kind.INTERRUPTED
    assert _end(Outcome(None, signal=15), {}, interrupted=True) == Kind.INTERRUPTED
    assert _end(Outcome(78), {}, interrupted=True) == Kind.PERMANENT  # a real failure stays one
    assert _end(Outcome(75), {}, migrating=True) == Kind.MIGRATED
    assert _end(Outcome(75), {}, segment=True) == Kind.SEGMENT
    assert _end(Outcome(1), {}, interrupted=True) == Kind.INTERRUPTED
