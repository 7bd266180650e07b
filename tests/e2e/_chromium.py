"""A minimal headless-Chromium driver over the DevTools protocol, for testing HTML reports.

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from file
descriptor 3 and writes replies and events to descriptor 4, each message JSON terminated by
a NUL byte. Talking over that pipe needs no extra package, no port and no network.
Protocol reference: https://chromedevtools.github.io/devtools-protocol/
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_MISSING", "Browser", "PageReport", "find_chromium", "load_page"]

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-default-apps", "--disable-extensions", "--mute-audio",
          "--remote-debugging-pipe", "--window-size=1280,2000")
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The skip reason, and the marker tests/conftest.py counts for its end-of-run notice.
CHROMIUM_MISSING = ("HTML report test skipped: headless Chromium not found on PATH (looked for "
                    + ", ".join(_CANDIDATES) + "); enable with `apt-get install chromium` "
                    "(Debian/Ubuntu), as .ci/run does; with CI=true this is a failure instead")


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable, or None."""
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What happened while a page loaded: console errors, requests, dialogs, and probes."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot_png: bytes = b""


class _Pipe:
    """Send commands and collect events over Chromium's debugging pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc, self.out, self.inp = proc, to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 30) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        return self._reply(self.next_id, timeout)

    def _reply(self, wanted: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self._read(deadline):
                if message.get("id") == wanted:
                    if "error" in message:
                        raise RuntimeError(f"DevTools error: {message['error']}")
                    return message.get("result", {})
                self.events.append(message)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        import select

        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Chromium did not answer in time")
        ready, _, _ = select.select([self.inp], [], [], left)
        if not ready:
            return []
        chunk = os.read(self.inp, 1 << 20)
        if not chunk:
            raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
        self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def wait_event(self, method: str, timeout: float, session: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        dismissed = 0
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            # A JavaScript dialog blocks the page until answered: record it, dismiss it.
            dialogs = [e for e in self.events if e.get("method") == "Page.javascriptDialogOpening"]
            for _ in dialogs[dismissed:]:
                self.send("Page.handleJavaScriptDialog", {"accept": False}, session=session)
            dismissed = len(dialogs)
            self.events += self._read(deadline)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events += self._read(deadline)
            except TimeoutError:
                return


def _start(executable: str, profile: str) -> _Pipe:
    cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
    ev_r, ev_w = os.pipe()  # Chromium writes on fd 4, we read

    def child_fds() -> None:
        # Copy both ends out of the way first: either may already sit on 3 or 4.
        high_r, high_w = os.dup(cmd_r), os.dup(ev_w)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    # pass_fds=(3, 4): close_fds runs after preexec_fn and must keep the renumbered ends.
    proc = subprocess.Popen([executable, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=child_fds,
                            start_new_session=True)
    os.close(cmd_r)
    os.close(ev_w)
    return _Pipe(proc, cmd_w, ev_r)


def _collect(report: PageReport, events: list[dict[str, Any]], page_url: str,
             session: str) -> None:
    for event in events:
        if event.get("sessionId") != session:  # another tab of the same browser
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.console_errors.append(json.dumps(params.get("args", []))[:300])
        elif method == "Runtime.exceptionThrown":
            report.console_errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            report.console_errors.append(params["entry"].get("text", "")[:300])
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page_url:
                report.requests.append(url)
        elif method == "Page.javascriptDialogOpening":
            report.dialogs.append(params.get("message", ""))


class Browser:
    """One headless Chromium for several page loads (a module-scoped fixture's): starting the
    browser costs more than loading a report. Each :meth:`load` opens the page in a tab of its
    own and closes that tab before it returns, so one page's events never reach another's
    report."""

    def __init__(self, executable: str | None = None) -> None:
        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError("no chromium executable on PATH")
        # Chromium's helper processes may still write to the profile for a moment after the
        # browser exits: the whole process group is killed, and a late file cannot fail a test.
        self._profile = tempfile.TemporaryDirectory(prefix="chipfit-chromium-",
                                                    ignore_cleanup_errors=True)
        self._pipe = _start(executable, self._profile.name)

    def load(self, path: Path, probes: dict[str, str], timeout: float = 60,
             width: int | None = None) -> PageReport:
        """:func:`load_page` in this browser."""
        return _drive(self._pipe, Path(path).resolve().as_uri(), probes, timeout, width)

    def close(self) -> None:
        pipe = self._pipe
        try:
            os.close(pipe.out)
            pipe.proc.terminate()
            try:
                pipe.proc.wait(10)
            except subprocess.TimeoutExpired:
                pipe.proc.kill()
                pipe.proc.wait(10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pipe.proc.pid, signal.SIGKILL)
            os.close(pipe.inp)
        finally:
            self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_page(path: Path, probes: dict[str, str], executable: str | None = None,
              timeout: float = 60, width: int | None = None) -> PageReport:
    """Open ``path`` in a headless Chromium of its own; return what it logged, requested and
    evaluated.

    ``probes`` maps names to JavaScript expressions evaluated after the load event; their
    values come back in ``PageReport.values``. A screenshot of the page is taken too.
    ``width``: the viewport width in CSS pixels (default: the 1280-pixel window); below 700
    the page is laid out as on a phone (``mobile``, so its viewport meta tag applies).
    """
    with Browser(executable) as browser:
        return browser.load(path, probes, timeout, width)


def _drive(pipe: _Pipe, url: str, probes: dict[str, str], timeout: float,
           width: int | None = None) -> PageReport:
    target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
    try:
        return _drive_target(pipe, target["targetId"], url, probes, timeout, width)
    finally:
        pipe.send("Target.closeTarget", {"targetId": target["targetId"]}, timeout=timeout)
        pipe.events.clear()  # what the closed tab sent last is no other page's


def _drive_target(pipe: _Pipe, target: str, url: str, probes: dict[str, str], timeout: float,
                  width: int | None) -> PageReport:
    attached = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})
    session = attached["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
    if width is not None:
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1,
                   "mobile": width < 700}, session=session)
    pipe.events.clear()  # only what the report page does counts
    pipe.send("Page.navigate", {"url": url}, session=session)
    pipe.wait_event("Page.loadEventFired", timeout, session)
    pipe.drain(0.5)  # late console messages and requests
    report = PageReport()
    for name, expression in probes.items():
        result = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                           session=session)
        report.values[name] = result.get("result", {}).get("value")
    shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                     session=session, timeout=timeout)
    report.screenshot_png = base64.b64decode(shot["data"])
    _collect(report, pipe.events, url, session)
    return report
