"""The example chat page in headless Chromium: start, reload mid-answer, stop.

Real browser, real Hypercorn: no mock clock; trio deadlines instead.
"""

from __future__ import annotations

import json

import pytest
import trio

from examples.chat_app import create_app

from .cdp import open_page
from .server_support import running_server

SHOWN = "[...document.querySelectorAll('#answer span')].map(s => [Number(s.dataset.i), s.textContent])"


@pytest.mark.timeout(150)  # its own trio deadline is 90 s: let that one speak first
async def test_page_survives_a_reload_and_stop_keeps_the_partial_answer(tmp_path):
    with trio.fail_after(90):
        async with (
            running_server(create_app()) as server,
            open_page(f"{server.url}/", tmp_path / "profile") as page,
        ):
            await page.wait_for("document.readyState === 'complete' && !!document.getElementById('start')")
            await page.eval("document.getElementById('start').click()")
            await page.wait_for("document.querySelectorAll('#answer span').length >= 5")
            await page.call("Page.reload")
            await page.wait_for("document.readyState === 'complete' && !!document.getElementById('start')")
            before = len(await page.eval(SHOWN))
            await page.wait_for(f"document.querySelectorAll('#answer span').length >= {before + 5}")
            await page.eval("document.getElementById('stop').click()")
            end = await page.wait_for("document.getElementById('status').dataset.end")
            assert end == "cancelled"
            shown = await page.eval(SHOWN)
            result = json.loads(await page.eval("document.getElementById('status').dataset.result"))
    indexes = [i for i, _ in shown]
    assert indexes == list(range(1, len(indexes) + 1)), "no token missing or duplicated across the reload"
    assert len(indexes) > before >= 5
    assert result["text"] == "".join(text for _, text in shown), "the partial result is what the page showed"
