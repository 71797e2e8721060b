"""Availability windows of personal machines (a platform's ``available:`` section): the
hours of the week a platform may run trials, in the coordinator's local time.

    available:
      hours: "19:00-08:00"     # from 19:00 to 08:00 the next morning (a window may wrap midnight)
      days: weekdays           # the days a window OPENS on: weekdays, weekends, every day, or [mon, fri]

Several windows: ``available: [{hours: "19:00-08:00", days: weekdays}, {hours: "00:00-24:00",
days: weekends}]``. Outside every window the platform takes no new trial and its running
trials are moved (built-in ones checkpoint first), as when a faster host frees up.
Pure: ``Window.open_at(seconds since the epoch)``; the loop asks each turn.

Conditions read on the host (``Conditions``; sampled by backends/hostwatch.py, decided by
schedule/hostgate.py), alone or beside one window, all of them must hold:

    available:
      when_idle: {load_below: 1.5, gpu_procs_below: 1}   # others' load and GPU processes
      on_ac_power: true                                   # not on battery

With several windows and conditions: ``available: {windows: [...], when_idle: ...}``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from coordinator.config.yamlcfg import Section

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAMED = {"weekdays": DAYS[:5], "weekends": DAYS[5:], "every day": DAYS, "daily": DAYS}
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Window:
    start_min: int  # minutes after midnight
    end_min: int  # may be <= start: the window ends the next day
    days: tuple[int, ...]  # weekdays it opens on, 0 = Monday

    def open_at(self, t: float) -> bool:
        lt = time.localtime(t)
        minute, day = lt.tm_hour * 60 + lt.tm_min, lt.tm_wday
        if self.end_min > self.start_min:
            return day in self.days and self.start_min <= minute < self.end_min
        # wraps midnight: open from start on an opening day, or before end the day after one
        return (day in self.days and minute >= self.start_min) or \
            ((day - 1) % 7 in self.days and minute < self.end_min)

    def describe(self) -> str:
        days = next((n for n, d in NAMED.items() if tuple(DAYS.index(x) for x in d) == self.days), None)
        return (f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-{self.end_min // 60:02d}:"
                f"{self.end_min % 60:02d} {days or ','.join(DAYS[d] for d in self.days)}")


def open_at(windows: tuple[Window, ...], t: float) -> bool:
    """No windows: always available."""
    return not windows or any(w.open_at(t) for w in windows)


@dataclass(frozen=True)
class Conditions:
    """When a platform is available by what its host says (None: not asked)."""

    load_below: float | None = None  # the 1-minute load average of others' processes
    gpu_procs_below: int | None = None  # others' compute processes on its GPUs (nvidia-smi)
    settle_s: float = 60.0  # closed, it opens again once idle for this long (no flapping)
    on_ac_power: bool = False  # only while on mains power

    def describe(self) -> str:
        idle = [f"load below {self.load_below:g}" if self.load_below is not None else "",
                "" if self.gpu_procs_below is None else "no other GPU process" if self.gpu_procs_below == 1
                else f"fewer than {self.gpu_procs_below} other GPU processes"]
        parts = [f"when idle ({', '.join(x for x in idle if x)}; open again after {self.settle_s:g} s idle)"
                 if any(idle) else "", "on AC power" if self.on_ac_power else ""]
        return ", ".join(p for p in parts if p)


CONDITION_KEYS = ("when_idle", "on_ac_power")


def parse_available(sec: Section, connection: str, key: str = "available") \
        -> tuple[tuple[Window, ...], Conditions | None]:
    """A platform's ``available:``: its windows (() = every hour) and host conditions (read
    on the host, so only for the hosts coord runs an agent on: local and ssh)."""
    raw = sec.raw(key)
    if raw is None:
        return (), None
    if isinstance(raw, dict) and connection not in ("local", "ssh"):
        for name in CONDITION_KEYS:
            if name in raw:
                raise Section(raw, sec.source, (*sec.path, key)).fail(
                    name, f"{name} is read on the host itself: only local and ssh platforms have it, not {connection}")
    if isinstance(raw, dict) and "windows" in raw:
        top = Section(raw, sec.source, (*sec.path, key))
        windows = parse_windows(top, "windows")
        cond = _conditions(top)
        top.done()
        return windows, cond
    if isinstance(raw, dict) and any(k in raw for k in CONDITION_KEYS):
        top = Section(raw, sec.source, (*sec.path, key))
        cond = _conditions(top)
        if "hours" in raw or "days" in raw:
            return (_window(top),), cond
        top.done()
        return (), cond
    return parse_windows(sec, key), None


def _conditions(top: Section) -> Conditions | None:
    idle = top.section("when_idle") if top.has("when_idle") else None
    ac = top.get("on_ac_power", bool, False)
    if idle is None:
        return Conditions(on_ac_power=True) if ac else None
    load = idle.get("load_below", float, None, minimum=0.01)
    procs = idle.get("gpu_procs_below", int, None, minimum=1)
    settle = idle.get("settle_s", float, 60.0, minimum=0)
    idle.done()  # a misspelt key is named as such, not as a missing one
    if load is None and procs is None:
        raise idle.fail("load_below", "when_idle needs load_below (e.g. 1.5) or gpu_procs_below (e.g. 1), or both")
    return Conditions(load, procs, settle, ac)


def parse_windows(sec: Section, key: str = "available") -> tuple[Window, ...]:
    raw = sec.raw(key)
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        path = (*sec.path, key, i) if isinstance(raw, list) else (*sec.path, key)
        w = Section(item, sec.source, path)
        for cond in CONDITION_KEYS:
            if w.has(cond):
                raise w.fail(cond, f"{cond} holds for the platform, not one window: write available: "
                                   f"{{windows: [...], {cond}: ...}}")
        out.append(_window(w))
    return tuple(out)


def _window(w: Section) -> Window:
    hours = w.get("hours", str, "00:00-24:00")
    m = _HOURS.match(hours.strip())
    if not m or int(m[1]) > 24 or int(m[3]) > 24 or int(m[2]) > 59 or int(m[4]) > 59:
        raise w.fail("hours", f"{hours!r} is not a window of hours (HH:MM-HH:MM, e.g. \"19:00-08:00\")")
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if start >= 24 * 60:
        raise w.fail("hours", f"{hours!r}: a window starts before 24:00")
    raw: Any = w.raw("days", "every day")
    names = NAMED.get(str(raw).lower()) if isinstance(raw, str) else None
    if names is None:
        names = tuple(str(d).lower()[:3] for d in raw) if isinstance(raw, list) else ()
        bad = [d for d in names if d not in DAYS]
        if not names or bad:
            raise w.fail("days", f"{raw!r} is not a list of days: weekdays, weekends, every day, or e.g. [mon, fri]")
    w.done()
    return Window(start, min(end, 24 * 60) if end > start else end, tuple(sorted({DAYS.index(d) for d in names})))
