"""`autoresearch serve` in a real headless Chromium (Debian's `chromium`), driven over the DevTools protocol:
the page loads, shows the session's rows, and a key pressed in it pauses the headless run."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_watch import HeadlessRun, answers, free_port, held_session, running, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
SCREENSHOT = Path(__file__).parent.parent / "screenshots" / "serve-browser.png"
"""Written again only with UPDATE_SCREENSHOTS=1 (else the test's own copy goes to its temp dir)."""

# Kept in the page: what the app's websocket brings (the terminal's output), to read the screen's text from.
RECORD_FRAMES = """
window.__frames = [];
const Native = window.WebSocket;
window.WebSocket = function (...args) {
  const ws = new Native(...args);
  ws.addEventListener('message', (m) => {
    if (typeof m.data === 'string') { window.__frames.push(m.data); }
    else if (m.data instanceof ArrayBuffer) { window.__frames.push(new TextDecoder().decode(m.data)); }
    else if (m.data && m.data.text) { m.data.text().then((t) => window.__frames.push(t)); }
  });
  return ws;
};
window.WebSocket.prototype = Native.prototype;
"""


class DevTools:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            reply = await self.ws.receive_json()
            if reply.get("id") == self.next_id:
                return dict(reply.get("result", {}))

    async def screen_text(self) -> str:
        result = await self.call("Runtime.evaluate", expression="(window.__frames || []).join('')", returnByValue=True)
        return str(result.get("result", {}).get("value", ""))

    async def wait_text(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in await self.screen_text():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the page never showed {text!r}; it got: {(await self.screen_text())[-600:]!r}")

    async def press(self, key: str) -> None:
        await self.call("Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()")
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key)


async def drive(debug_port: int, page_url: str, run: HeadlessRun, screenshot: Path) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{debug_port}/json") as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.call("Page.enable")
            await tools.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_FRAMES)
            await tools.call("Page.navigate", url=page_url)
            await tools.wait_text("baseline")  # the session's first row, read from the journal by the served app
            await tools.wait_text("step ")  # the live log
            await tools.press("p")
            for _ in range(600):
                if run.printed("paused from the browser"):
                    break
                await asyncio.sleep(0.1)
            shot = await tools.call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))


def test_serve_shows_the_session_in_chromium_and_a_key_in_the_page_pauses_the_run(tmp_path: Path) -> None:
    root = held_session(tmp_path, "--max-experiments", "3")
    run = HeadlessRun(root, hold_at="2")
    port, debug_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.core.cli", "serve", "--port", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    browser: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: running(root, 2), "experiment 2 runs")
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), "the server answers")
        assert CHROMIUM is not None
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'chromium'}",
                f"--remote-debugging-port={debug_port}",
                "--window-size=1280,800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: answers(f"http://127.0.0.1:{debug_port}/json/version"), "chromium answers")
        screenshot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / SCREENSHOT.name
        asyncio.run(drive(debug_port, f"http://127.0.0.1:{port}/", run, screenshot))
        assert run.printed("paused from the browser"), run.lines[-10:]
        assert screenshot.stat().st_size > 10_000
    finally:
        for proc in (browser, server, run.proc):
            if proc is not None:
                proc.kill()
                proc.wait(30)
