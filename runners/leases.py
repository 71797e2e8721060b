"""Slot leases: how several coordinators share one host's slots (host side, stdlib only).

A host's lease directory (the platform's ``lease_dir``, by default ``<work_dir>/leases``)
holds one file per coordinator that uses the host, ``<holder>.lease`` (JSON, replaced
atomically), written only by that coordinator's agent on the host:

    {"holder": H, "run": RUN, "label": "user@machine pid", "priority": P, "preempt": B,
     "slots": N, "waiting": W, "expires": WALL, "held": {TAG: {"adir": D, "n": K, "gpus": [..]}}}

- A launch *claims* ``n`` slots under the directory's ``.lock`` (flock): granted only if
  the slots every coordinator holds leave room, and no other coordinator that waits has
  precedence (a higher priority, or the same priority and fewer slots held: fair share).
- The agent renews its file every second (``expires`` = now + ttl) and drops an entry when
  its attempt ends. A coordinator that dies takes its agent with it (the connection closes),
  so its file expires after ``ttl`` seconds: its reservation (waiting, priority) is gone,
  and of its entries only attempts still running count (a detached trial still uses its
  slot; one that ended frees it). An expired file with nothing running is deleted.
- *Preemption*: a coordinator started with ``--preempt`` that waits for slots held by a
  lower priority gets them: each lower-priority holder's view says how many of its trials
  to stop (``yield``), lowest priority first; that coordinator stops them (checkpoint,
  requeue, no retry spent). The assignment is computed the same way by every agent from
  the same files, so exactly enough trials stop.

No daemon: the files and the lock are the whole protocol. Every holder reads every file
without the lock (files are replaced whole); only claims, releases and renewals lock.
"""

import contextlib
import fcntl
import json
import os
import time

import hostproc

SUFFIX = ".lease"
STARTING_S = 10.0  # an entry whose attempt has not yet written its pid counts this long


def _open_dir(path, shared):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        if shared:  # a lease_dir named in the registry, for several users of the host: like
            # /tmp, anyone may add a file and nobody may remove another's
            with contextlib.suppress(OSError):
                os.chmod(path, 0o1777)
    return path


@contextlib.contextmanager
def locked(path, shared=False):
    _open_dir(path, shared)
    lock = os.path.join(path, ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: a read-only descriptor locks as well
        fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_all(path):
    """Every lease in the directory, by holder (unreadable or half-written files skipped)."""
    out = {}
    try:
        names = os.listdir(path)
    except OSError:
        return out
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        try:
            with open(os.path.join(path, name)) as fh:
                lease = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(lease, dict) and isinstance(lease.get("held"), dict):
            out[name[:-len(SUFFIX)]] = lease
    return out


def write(path, lease):
    hostproc.write_atomic(os.path.join(path, lease["holder"] + SUFFIX), json.dumps(lease, sort_keys=True),
                          durable=False)  # leases outlive no reboot: nothing to fsync
    with contextlib.suppress(OSError):
        os.chmod(os.path.join(path, lease["holder"] + SUFFIX), 0o644)  # every coordinator reads it


def running(entry, now=None):
    """True while the entry's attempt may still use its slot: no exit record, and its
    process alive (or not yet started, for a few seconds)."""
    adir = entry.get("adir") or ""
    if os.path.exists(os.path.join(adir, "exit.json")):
        return False
    try:
        with open(os.path.join(adir, "pid")) as fh:
            pid = int(fh.read())
    except (OSError, ValueError):
        since = entry.get("since", 0.0)
        return (now or time.time()) - since < STARTING_S
    return hostproc.alive(pid)  # a warm worker outlives its attempt, but it wrote exit.json


def live(lease, now):
    return lease.get("expires", 0.0) > now


def counted(lease, now):
    """The entries of ``lease`` that use slots now: all of a live lease's, and of an expired
    one's only those whose attempt still runs."""
    held = lease.get("held", {})
    if live(lease, now):
        return held
    return {tag: e for tag, e in held.items() if running(e, now)}


def _used(entries):
    return sum(int(e.get("n", 1)) for e in entries.values())


def _precedes(other, mine, other_held, my_held):
    """Whether a waiting ``other`` takes a freed slot before ``mine``."""
    if other.get("priority", 0) != mine.get("priority", 0):
        return other.get("priority", 0) > mine.get("priority", 0)
    return other_held < my_held  # fair share between equal priorities


def view(leases, holder, me, now):
    """What ``holder`` (whose own lease is ``me``) may use of this host now:

    ``others``: slots it must treat as taken (held by others, or kept for waiting
    coordinators that come first); ``gpus``: GPUs others hold; ``yield``: how many of its
    own trials to stop for a preempting higher priority; ``holders``: other live leases."""
    counts = {h: counted(lease, now) for h, lease in leases.items() if h != holder}
    mine = _used(me.get("held", {}))
    used_others = sum(_used(c) for c in counts.values())
    slots = int(me.get("slots", 1))
    free = max(0, slots - used_others - mine)
    reserved = 0
    for h, lease in leases.items():
        if h != holder and live(lease, now) and lease.get("waiting", 0) > 0 and \
                _precedes(lease, me, _used(counts[h]), mine):
            reserved += int(lease["waiting"])
    gpus = sorted({g for c in counts.values() for e in c.values() for g in e.get("gpus", [])})
    return {"others": used_others + min(reserved, free), "gpus": gpus,
            "yield": _yields(leases, counts, holder, me, now, slots, used_others + mine),
            "holders": sum(1 for h, lease in leases.items() if h != holder and live(lease, now))}


def _yields(leases, counts, holder, me, now, slots, used):
    """How many of ``holder``'s trials a preempting, higher-priority waiter needs stopped."""
    everyone = dict(counts)
    everyone[holder] = me.get("held", {})
    table = {h: lease for h, lease in leases.items() if h != holder}
    table[holder] = me
    preemptors = sorted((h for h, lease in table.items() if lease.get("preempt") and live(lease, now)
                         and lease.get("waiting", 0) > 0), key=lambda h: (-table[h].get("priority", 0), h))
    free = max(0, slots - used)
    remaining = {h: _used(everyone.get(h, {})) for h in table}
    mine = 0
    for p in preemptors:
        need = int(table[p]["waiting"])
        take = min(free, need)
        free, need = free - take, need - take
        victims = sorted((h for h in table if table[h].get("priority", 0) < table[p].get("priority", 0)
                          and remaining[h] > 0), key=lambda h: (table[h].get("priority", 0), h))
        for v in victims:
            if need <= 0:
                break
            n = min(need, remaining[v])
            remaining[v] -= n
            need -= n
            if v == holder:
                mine += n
    return mine


def _gc(path, leases, now):
    """Delete expired leases with nothing running: their holder is gone."""
    for h, lease in list(leases.items()):
        if not live(lease, now) and not counted(lease, now):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(path, h + SUFFIX))
            del leases[h]


class Lease:
    """This agent's lease on its host (one per coordinator and host)."""

    def __init__(self, path, holder, meta, ttl, shared=False):
        self.path, self.holder, self.ttl = os.path.expanduser(path), holder, float(ttl)
        self.meta, self.shared = dict(meta), shared

    def _mine(self, leases, now):
        me = leases.get(self.holder) or {"holder": self.holder, "held": {}}
        me.update(self.meta)
        me["holder"], me["expires"] = self.holder, now + self.ttl
        return me

    def update(self, **meta):
        """New waiting count, priority or slot count: written at once, under the lock."""
        self.meta.update(meta)
        return self.renew()

    def renew(self):
        """Keep the lease alive; drop entries whose attempt ended; return this holder's view."""
        now = time.time()
        with locked(self.path, self.shared):
            leases = read_all(self.path)
            me = self._mine(leases, now)
            me["held"] = {t: e for t, e in me["held"].items() if running(e, now)}
            leases[self.holder] = me
            _gc(self.path, leases, now)
            write(self.path, me)
            return view(leases, self.holder, me, now)

    def claim(self, tag, adir, n, gpus, started):
        """(granted, view). ``started``: the attempt was already started (a coordinator that
        re-attaches after a restart): its slots are taken whatever the others hold."""
        now = time.time()
        with locked(self.path, self.shared):
            leases = read_all(self.path)
            me = self._mine(leases, now)
            held = me["held"]
            granted = tag in held or started
            if not granted:
                v = view(leases, self.holder, me, now)
                mine = _used(held)
                taken_gpus = set(v["gpus"])
                granted = mine + v["others"] + n <= int(me.get("slots", 1)) and not (set(gpus) & taken_gpus)
            if granted:
                held[tag] = {"adir": adir, "n": int(n), "gpus": list(gpus), "since": now}
                write(self.path, me)
            leases[self.holder] = me
            return granted, view(leases, self.holder, me, now)

    def release(self, tag):
        with locked(self.path, self.shared):
            leases = read_all(self.path)
            me = leases.get(self.holder)
            if me is None or tag not in me.get("held", {}):
                return
            del me["held"][tag]
            me["expires"] = time.time() + self.ttl
            write(self.path, me)

    def close(self):
        """The coordinator is done with the host: its file goes now, not after ttl (what it
        still runs, a coordinator that lets go of its trials, keeps counting until it ends)."""
        now = time.time()
        with locked(self.path, self.shared):
            leases = read_all(self.path)
            me = self._mine(leases, now)
            me["held"] = {t: e for t, e in me["held"].items() if running(e, now)}
            if me["held"]:
                me["waiting"], me["expires"] = 0, now  # expired: only its running entries count
                write(self.path, me)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, self.holder + SUFFIX))

    def peek(self):
        """This holder's view without writing (cheap: the files are read, not locked)."""
        now = time.time()
        leases = read_all(self.path)
        me = self._mine(leases, now)
        return view(leases, self.holder, me, now)
