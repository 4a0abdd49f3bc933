"""Drive Debian's headless Chromium over the DevTools protocol (trio-websocket).

Playwright's browser download does not work on these machines; the
DevTools protocol needs nothing but a websocket.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import trio
from trio_websocket import open_websocket_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from trio_websocket import WebSocketConnection

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: run `bash scripts/install-chromium` (CI does)"
    return found


class Page:
    """One browser tab."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self._ws.get_message())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]  # type: ignore[no-any-return]

    async def eval(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll ``expression`` until it is truthy (the page changes on its own;
        the caller's deadline bounds the wait)."""
        while True:
            value = await self.eval(expression)
            if value:
                return value
            await trio.sleep(0.05)

    async def screenshot(self) -> bytes:
        """The tab's viewport as PNG bytes."""
        shot = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


class Browser:
    """One Chromium process; :meth:`tab` opens tabs in it (each with its own sessionStorage)."""

    def __init__(self, port: str) -> None:
        self._port = port

    @asynccontextmanager
    async def tab(self, url: str) -> AsyncIterator[Page]:
        """A new tab on ``url``; closed when the block ends."""
        async with httpx.AsyncClient() as client:
            target = (await client.put(f"http://127.0.0.1:{self._port}/json/new?{url}")).json()
        try:
            async with open_websocket_url(target["webSocketDebuggerUrl"], max_message_size=2**24) as ws:
                yield Page(ws)
        finally:
            with trio.move_on_after(5, shield=True):
                async with httpx.AsyncClient() as client:
                    await client.get(f"http://127.0.0.1:{self._port}/json/close/{target['id']}")


@asynccontextmanager
async def open_browser(profile: Path) -> AsyncIterator[Browser]:
    """Start Chromium with a fresh profile, yield it; kill it afterwards."""
    process = await trio.lowlevel.open_process(
        [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        output = b""
        with trio.fail_after(30):
            while b"DevTools listening on ws://" not in output or not output.endswith(b"\n"):
                chunk = await process.stderr.receive_some()
                assert chunk, f"chromium exited: {output.decode(errors='replace')}"
                output += chunk
        line = next(line for line in output.decode().splitlines() if "DevTools listening on" in line)
        yield Browser(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    finally:
        process.kill()
        with trio.move_on_after(10, shield=True):
            await process.wait()


@asynccontextmanager
async def open_page(url: str, profile: Path) -> AsyncIterator[Page]:
    """Start Chromium, open ``url`` in a tab, yield it; kill Chromium afterwards."""
    async with open_browser(profile) as browser, browser.tab(url) as page:
        yield page
