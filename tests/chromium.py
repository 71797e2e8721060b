"""Open a page in headless Chromium and report what a reader's browser would: console
messages and errors, images that failed to load, network requests, and a screenshot.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no port is opened and no
library beyond the standard one is needed."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def binary() -> str | None:
    return next((found for name in BINARIES if (found := shutil.which(name))), None)


@dataclass
class PageCheck:
    console: list[str] = field(default_factory=list)  # console messages of level warning or error, and exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    images: list[dict[str, Any]] = field(default_factory=list)  # each <img>: complete, natural size
    title: str = ""
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.w, self.r = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return dict(m.get("result") or {})
            self.events.append(m)
        raise TimeoutError(method)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while time.monotonic() < deadline:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m
        raise TimeoutError(method)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from Chromium")
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return dict(json.loads(raw))


def check_page(path: Path, width: int = 1200, height: int = 900) -> PageCheck:
    """Load ``path`` (a local file) and wait for its load event; every image's state, the
    console's warnings and errors, every request and a full-page screenshot."""
    exe = binary()
    if exe is None:
        raise RuntimeError("no Chromium: scripts/install.sh installs chromium-headless-shell")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="coord-chromium-")
    # Chromium reads commands on fd 3 and writes on fd 4: the child's ends are moved above
    # any low fd first, so that putting one on 3 cannot overwrite the other
    high_r, high_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 64), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 64)
    os.close(to_chrome_r)
    os.close(from_chrome_w)

    def child_fds() -> None:
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={profile}",
         "--no-first-run", "--disable-background-networking", f"--window-size={width},{height}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=(3, 4), preexec_fn=child_fds)
    os.close(high_r)
    os.close(high_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
    out = PageCheck()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired")
        probe = ("JSON.stringify({title: document.title, images: Array.from(document.images).map(i => "
                 "({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))})")
        value = json.loads(pipe.send("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                     session=session)["result"]["value"])
        out.title, out.images = value["title"], value["images"]
        metrics = pipe.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}},
            session=session)
        out.screenshot = base64.b64decode(shot["data"])
        for m in pipe.events:
            p = m.get("params") or {}
            if m.get("method") == "Runtime.exceptionThrown":
                out.console.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.console.append(f"console.{p['type']}: {p.get('args')}")
            elif m.get("method") == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.console.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m.get("method") == "Network.requestWillBeSent":
                out.requests.append(p["request"]["url"])
        with_errors = [m for m in pipe.events if m.get("method") == "Network.loadingFailed"]
        out.console.extend(f"failed to load: {m['params'].get('errorText')}" for m in with_errors)
    finally:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            pipe.send("Browser.close", timeout=5)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        shutil.rmtree(profile, ignore_errors=True)
    return out
