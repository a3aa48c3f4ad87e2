"""Headless Chromium for tests that check a page in a real browser: ``find_chromium`` locates the
executable, ``Browser`` drives it over the DevTools protocol on a pipe and records every request the
page makes (tests/train/test_report.py checks the evaluation report with it)."""

from __future__ import annotations

import json
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    import os
    import shutil

    candidates = [os.environ.get("AVS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4 of the child, messages
    ended by NUL): no port, no websocket library. Records every request the page makes."""

    def __init__(self, executable: str, profile: Path, width: int = 1280, height: int = 900) -> None:
        import fcntl
        import os
        import subprocess

        to_child, self._send_fd = os.pipe()
        self._recv_fd, from_child = os.pipe()
        # Copies above fd 4, so that placing them at 3 and 4 in the child cannot overwrite one another.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5) for fd in (to_child, from_child)]
        os.close(to_child)
        os.close(from_child)

        def wire() -> None:  # runs in the child: DevTools reads commands on fd 3, writes on fd 4
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=wire,
        )
        for fd in high:
            os.close(fd)
        self._buffer, self._next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for method in ("Page.enable", "Network.enable"):
            self.call(method, session=True)
        self._viewport(width, height)

    def _viewport(self, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _message(self, timeout: float) -> dict:
        import os
        import select

        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._recv_fd], [], [], timeout)
            chunk = os.read(self._recv_fd, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("no answer from Chromium")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        import os

        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        while True:
            message = self._message(timeout)
            self.events.append(message)
            if message.get("method") == event:
                return message

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session
        ]

    def screenshot(self, path: Path, width: int = 1280) -> None:
        """The whole page (not only the viewport) as a PNG."""
        import base64

        self._viewport(width, int(self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]["height"]))
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        import os

        try:
            self.call("Browser.close", timeout=10)
        except (TimeoutError, OSError, RuntimeError, json.JSONDecodeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a browser that will not exit is killed
            self.proc.kill()
        os.close(self._send_fd)
        os.close(self._recv_fd)
