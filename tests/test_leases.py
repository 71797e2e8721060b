"""The slot-lease rules (runners/leases.py) on real files: capacity, priority, fair share,
preemption, expiry. The coordinators' side runs for real in tests/ssh/test_ssh_sharing.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator import resources

sys.path.insert(0, str(resources.folder("runners")))
import leases  # noqa: E402


def lease(tmp: Path, name: str, priority: int = 0, preempt: bool = False, slots: int = 2, ttl: float = 5.0):
    return leases.Lease(str(tmp / "leases"), name, {"run": name, "priority": priority, "preempt": preempt,
                                                    "slots": slots, "waiting": 0}, ttl)


def adir(tmp: Path, tag: str, pid: int | None = None) -> str:
    d = tmp / "attempts" / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "pid").write_text(str(pid if pid is not None else os.getpid()))
    return str(d)


def test_claims_never_exceed_the_slots(tmp_path: Path) -> None:
    a, b = lease(tmp_path, "a"), lease(tmp_path, "b")
    assert a.claim("0.1", adir(tmp_path, "a0"), 1, [], False)[0]
    assert b.claim("0.1", adir(tmp_path, "b0"), 1, [], False)[0]
    granted, view = a.claim("1.1", adir(tmp_path, "a1"), 1, [], False)
    assert not granted and view["others"] == 1
    a.release("0.1")
    assert b.claim("1.1", adir(tmp_path, "b1"), 1, [], False)[0]


def test_a_claim_of_a_started_attempt_is_granted_and_gpus_are_not_shared(tmp_path: Path) -> None:
    a, b = lease(tmp_path, "a", slots=1), lease(tmp_path, "b", slots=2)
    assert a.claim("0.1", adir(tmp_path, "a0"), 1, [0], False)[0]
    assert a.claim("1.1", adir(tmp_path, "a1"), 1, [], True)[0]  # re-attach after a restart: it runs already
    granted, view = b.claim("0.1", adir(tmp_path, "b0"), 1, [0], False)
    assert not granted and view["gpus"] == [0]


def test_higher_priority_and_fewer_held_come_first(tmp_path: Path) -> None:
    low, high = lease(tmp_path, "low", 0), lease(tmp_path, "high", 5)
    assert low.claim("0.1", adir(tmp_path, "l0"), 1, [], False)[0]
    high.update(waiting=3)
    granted, view = low.claim("1.1", adir(tmp_path, "l1"), 1, [], False)
    assert not granted and view["others"] == 1  # the free slot is kept for the higher priority
    # equal priorities: the one holding fewer slots comes first (fair share)
    x, y = lease(tmp_path / "fair", "x"), lease(tmp_path / "fair", "y")
    assert x.claim("0.1", adir(tmp_path, "x0"), 1, [], False)[0]
    y.update(waiting=2)
    assert not x.claim("1.1", adir(tmp_path, "x1"), 1, [], False)[0]
    assert y.claim("0.1", adir(tmp_path, "y0"), 1, [], False)[0]
    x.update(waiting=1)
    y.update(waiting=1)  # one each: first come
    x.release("0.1")
    assert x.claim("2.1", adir(tmp_path, "x2"), 1, [], False)[0]


def test_preemption_takes_from_the_lowest_priority_only_what_is_needed(tmp_path: Path) -> None:
    low, mid = lease(tmp_path, "low", 0, slots=3), lease(tmp_path, "mid", 1, slots=3)
    top = lease(tmp_path, "top", 9, preempt=True, slots=3)
    assert low.claim("0.1", adir(tmp_path, "l0"), 1, [], False)[0]
    assert low.claim("1.1", adir(tmp_path, "l1"), 1, [], False)[0]
    assert mid.claim("0.1", adir(tmp_path, "m0"), 1, [], False)[0]
    assert top.update(waiting=2)["yield"] == 0
    assert low.peek()["yield"] == 2 and mid.peek()["yield"] == 0
    top.update(waiting=3)
    assert low.peek()["yield"] == 2 and mid.peek()["yield"] == 1
    top.update(preempt=False)
    assert low.peek()["yield"] == 0  # without --preempt a higher priority only waits


def test_a_dead_holders_lease_lapses_but_its_running_trials_still_count(tmp_path: Path) -> None:
    dead = lease(tmp_path, "dead", 9, ttl=2.0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert dead.claim("0.1", adir(tmp_path, "d0", sleeper.pid), 1, [], False)[0]
        assert dead.claim("1.1", adir(tmp_path, "d1", 999999), 1, [], False)[0]  # no such process
        dead.update(waiting=5)  # its reservation keeps the other slot while it is alive
        other = lease(tmp_path, "other", 0)
        assert not other.claim("0.1", adir(tmp_path, "o0"), 1, [], False)[0]
        time.sleep(2.3)  # no renewal: the holder's agent is gone
        granted, view = other.claim("0.1", adir(tmp_path, "o0"), 1, [], False)
        assert granted and view["others"] == 1  # the live trial of the dead holder still holds its slot
        assert not other.claim("1.1", adir(tmp_path, "o1"), 1, [], False)[0]
        sleeper.kill()
        sleeper.wait()
        assert other.claim("1.1", adir(tmp_path, "o1"), 1, [], False)[0]
        other.renew()
        assert not (tmp_path / "leases" / "dead.lease").exists()  # collected once nothing of it runs
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_closed_lease_goes_at_once(tmp_path: Path) -> None:
    a = lease(tmp_path, "a")
    d = adir(tmp_path, "a0")
    assert a.claim("0.1", d, 1, [], False)[0]
    Path(d, "exit.json").write_text(json.dumps({"exit": 0}))
    a.close()
    assert not list((tmp_path / "leases").glob("*.lease"))


@pytest.mark.parametrize("shared", [False, True])
def test_the_lease_directory_mode(tmp_path: Path, shared: bool) -> None:
    lz = leases.Lease(str(tmp_path / "dir"), "a", {"slots": 1}, 5.0, shared)
    lz.renew()
    mode = (tmp_path / "dir").stat().st_mode & 0o7777
    assert mode == (0o1777 if shared else 0o700)


def test_coord_queue_lists_this_machines_searches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``coord queue`` with no registry: this machine's lease directory."""
    monkeypatch.setenv("COORD_LEASE_DIR", str(tmp_path / "leases"))
    waiting = lease(tmp_path, "run-a", priority=3)
    waiting.update(waiting=2)
    out = subprocess.run([sys.executable, "-m", "coordinator", "queue"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    head, row = out.stdout.splitlines()[:2]
    assert head.split() == ["HOST", "SEARCH", "PRIORITY", "HELD", "WAITING", "STATE", "WHO"]
    assert row.split()[:6] == ["local", "run-a", "3", f"0/{os.cpu_count() or 1}", "2", "alive"]
