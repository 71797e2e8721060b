"""Ctrl-C and SIGTERM as a flag, not an exception (see ``Coordinator.run``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def trap_stop_signals(on_signal: Callable[[int], None]) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``on_signal(signum)``; returns what restores the old
    handlers. Off the main thread (tests, embedding) Python cannot set handlers: a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        on_signal(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, previous in old.items():
            signal.signal(sig, previous)
    return restore
