"""The example page (examples/chat_page.html) in headless Chromium, state by state.

Real browser, real Hypercorn, real clock: every wait is on a DOM condition or
the server's run document, under a generous trio deadline that only guards
against a hang. Each visible state is checked twice: in the DOM, and in a
screenshot taken there (the status badge's colour, the gap notice's colour,
read off the pixels), so a page that has the right text but shows nothing
fails too. ``TRIO_STREAMS_PAGE_SCREENSHOTS=DIR`` keeps the screenshots in
DIR (docs/example-page.png comes from there).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from PIL import Image

from examples.chat_app import ANSWER, create_app
from trio_streams import MemoryStore

from .cdp import open_browser
from .server_support import running_server

if TYPE_CHECKING:
    from trio_streams import RunContext

    from .cdp import Page

pytestmark = pytest.mark.timeout(200)  # the trio deadlines (120 s) speak first

HANG = 120
SERVE = [sys.executable, "-m", "trio_streams", "serve"]
#: The repository: where ``serve --app examples.chat_app:create_app`` finds the example.
ROOT = Path(__file__).resolve().parent.parent
#: The badge's background by state (the page's CSS), and the gap notice's.
BLUE, GREEN, ORANGE = (0x1D, 0x4E, 0xD8), (0x15, 0x80, 0x3D), (0xC2, 0x41, 0x0C)
YELLOW = (0xFE, 0xF0, 0x8A)

SHOWN = "[...document.querySelectorAll('#answer span')].map(s => [Number(s.dataset.i), s.textContent])"
STATE = """JSON.stringify({
  shown: SHOWN,
  status: document.getElementById('status').dataset.state,
  statusText: document.getElementById('status').textContent,
  end: document.getElementById('status').dataset.end || null,
  result: document.getElementById('status').dataset.result || null,
  resumedAfter: Number(document.getElementById('answer').dataset.resumedAfter),
  restored: Number(document.getElementById('answer').dataset.restored),
  events: Number(document.getElementById('m-events').textContent),
  tokens: Number(document.getElementById('m-tokens').textContent),
  rate: document.getElementById('m-rate').textContent,
  latency: document.getElementById('m-latency').textContent,
  readers: document.getElementById('m-readers').textContent,
  gapShown: !document.getElementById('gap').hidden && document.getElementById('gap').offsetHeight > 0,
  gapText: document.getElementById('gap').textContent,
  markers: [...document.querySelectorAll('#answer mark')].map(m => m.textContent),
  run: new URLSearchParams(location.search).get('run'),
  producer: document.getElementById('producer').value,
})""".replace("SHOWN", SHOWN)


async def state(page: Page) -> dict[str, Any]:
    return json.loads(await page.eval(STATE))  # type: ignore[no-any-return]


async def prepare(page: Page) -> None:
    """A fixed viewport at scale 1 (pixels are CSS pixels), once the page has loaded."""
    await page.call(
        "Emulation.setDeviceMetricsOverride", width=900, height=620, deviceScaleFactor=1, mobile=False
    )
    await page.wait_for("document.readyState === 'complete' && !!document.getElementById('start')")


async def reload(page: Page, url: str | None = None) -> None:
    """Reload (or go to ``url``) and wait for the new document (the old one
    carries a marker the new one lacks)."""
    await page.eval("window.__before_reload = true")
    if url is None:
        await page.call("Page.reload")
    else:
        await page.call("Page.navigate", url=url)
    await page.wait_for(
        "!window.__before_reload && document.readyState === 'complete' && !!document.getElementById('start')"
    )


async def screenshot(page: Page, name: str, tmp_path: Path) -> Image.Image:
    """Take a screenshot (kept in TRIO_STREAMS_PAGE_SCREENSHOTS too, if set)."""
    png = await page.screenshot()
    path = tmp_path / f"{name}.png"
    path.write_bytes(png)
    keep = os.environ.get("TRIO_STREAMS_PAGE_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / path.name)
    return Image.open(io.BytesIO(png)).convert("RGB")


async def colour_of(page: Page, image: Image.Image, element: str) -> tuple[int, int, int]:
    """The screenshot's colour just inside ``element``'s left edge, halfway down (its padding)."""
    box = json.loads(
        await page.eval(f"JSON.stringify(document.getElementById('{element}').getBoundingClientRect())")
    )
    assert box["width"] > 0, f"#{element} is not visible: {box}"
    assert box["height"] > 0, f"#{element} is not visible: {box}"
    pixel = image.getpixel((int(box["left"]) + 4, int(box["top"] + box["height"] / 2)))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - e) <= 6 for a, e in zip(actual, expected, strict=True))


async def start_demo(page: Page, tokens: int, rate: int) -> None:
    """Fill the form for the built-in demo producer and press Ask."""
    await page.eval(
        f"""(() => {{
          const $ = (id) => document.getElementById(id);
          $('producer').value = 'demo';
          $('producer').dispatchEvent(new Event('change'));
          $('tokens').value = '{tokens}';
          $('rate').value = '{rate}';
          $('start').click();
        }})()"""
    )


def indexes(shown: list[list[Any]]) -> list[int]:
    return [i for i, _ in shown]


async def test_streaming_reload_second_tab_and_stop(tmp_path: Path) -> None:
    with trio.fail_after(HANG):
        async with (
            running_server(create_app()) as server,
            open_browser(tmp_path / "profile") as browser,
            browser.tab(f"{server.url}/") as first,
        ):
            await prepare(first)
            # A run far longer than the test: only Stop ends it.
            await start_demo(first, tokens=10_000, rate=20)

            # Streaming: tokens appear as they come, the badge is blue.
            await first.wait_for("document.querySelectorAll('#answer span').length >= 5")
            streaming = await state(first)
            assert streaming["status"] == "running"
            assert streaming["end"] is None
            assert indexes(streaming["shown"]) == list(range(1, len(streaming["shown"]) + 1))
            assert streaming["run"], "the run's id is in the URL"
            run_id = streaming["run"]
            image = await screenshot(first, "1-streaming", tmp_path)
            assert close_to(await colour_of(first, image, "status"), BLUE)

            # Reload mid-answer: what was shown comes back, the stream resumes after it.
            await reload(first)
            resumed = await state(first)
            before = resumed["restored"]
            assert before >= 5
            assert resumed["run"] == run_id
            assert resumed["resumedAfter"] == before, "resumed after the last token shown"
            await first.wait_for(f"document.querySelectorAll('#answer span').length >= {before + 5}")
            after_reload = await state(first)
            assert indexes(after_reload["shown"]) == list(range(1, len(after_reload["shown"]) + 1)), (
                "no token missing or duplicated across the reload"
            )
            # The server sent only what came after the resume point (a replay
            # from the start would count every repeat here).
            assert after_reload["events"] == len(after_reload["shown"]) - before
            assert after_reload["tokens"] == len(after_reload["shown"])
            assert float(after_reload["rate"]) > 0
            assert after_reload["latency"].endswith(" ms")
            image = await screenshot(first, "2-resumed", tmp_path)
            assert close_to(await colour_of(first, image, "status"), BLUE)

            # A second tab on the run's URL follows the same run: from the start, then live.
            async with browser.tab(f"{server.url}/?run={run_id}") as second:
                await prepare(second)
                seen = len((await state(first))["shown"])
                await second.wait_for(f"document.querySelectorAll('#answer span').length >= {seen + 2}")
                # Both tabs are readers of the run now; each page shows it.
                await first.wait_for("document.getElementById('m-readers').textContent === '2'")
                await second.wait_for("document.getElementById('m-readers').textContent === '2'")
                following = await state(second)
                assert following["run"] == run_id
                assert following["status"] == "running"
                assert following["resumedAfter"] == 0
                assert following["producer"] == "demo", "the form shows the run's producer"
                assert indexes(following["shown"]) == list(range(1, len(following["shown"]) + 1))
                image = await screenshot(second, "3-second-tab", tmp_path)
                assert close_to(await colour_of(second, image, "status"), BLUE)

                # Stop in the first tab: both end `cancelled`, the partial answer stays.
                await first.eval("document.getElementById('stop').click()")
                assert await first.wait_for("document.getElementById('status').dataset.end") == "cancelled"
                assert await second.wait_for("document.getElementById('status').dataset.end") == "cancelled"
                stopped = await state(first)
                followed = await state(second)
                image_second = await screenshot(second, "4-second-tab-stopped", tmp_path)
                assert close_to(await colour_of(second, image_second, "status"), ORANGE)
            image = await screenshot(first, "5-stopped", tmp_path)
            assert close_to(await colour_of(first, image, "status"), ORANGE)
            assert stopped["status"] == "cancelled"
            assert "partial answer kept" in stopped["statusText"]
            assert len(stopped["shown"]) > len(after_reload["shown"])
            assert json.loads(stopped["result"])["text"] == "".join(t for _, t in stopped["shown"]), (
                "the partial result is what the page shows"
            )
            assert followed["shown"] == stopped["shown"], "the second tab saw the same run"

            # A reload after the end shows the same partial answer and stays cancelled.
            await reload(first)
            await first.wait_for("document.getElementById('status').dataset.end === 'cancelled'")
            again = await state(first)
            assert again["shown"] == stopped["shown"]
            assert again["status"] == "cancelled"
            async with httpx.AsyncClient() as client:
                document = (await client.get(f"{server.url}/v1/runs/{run_id}")).json()
            assert document["status"] == "cancelled"
            assert document["partial"] is True


async def test_a_reader_behind_the_trimmed_history_sees_a_gap_notice(tmp_path: Path) -> None:
    # The store and the log keep 5 events per run: a reader that starts from
    # the beginning of a 30-token run finds most of it gone -- a true gap.
    app = create_app(store=MemoryStore(max_events_per_run=5), log_max_events=5)
    with trio.fail_after(HANG):
        async with running_server(app) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                created = await client.post(
                    "/v1/runs", json={"producer": "demo", "input": {"tokens": 30, "rate": None}}
                )
                run_id = created.json()["run_id"]
                # Read the run to its end (a reader from the start: it is told of the gap too).
                async with client.stream("GET", f"/v1/runs/{run_id}/events?after=0") as events:
                    frames = "".join([text async for text in events.aiter_text()])
            assert "event: gap" in frames
            assert "event: done" in frames
            async with (
                open_browser(tmp_path / "profile") as browser,
                browser.tab(f"{server.url}/?run={run_id}") as page,
            ):
                await prepare(page)
                assert await page.wait_for("document.getElementById('status').dataset.end") == "done"
                shown = await state(page)
                first = indexes(shown["shown"])[0]
                assert 1 < first <= 30
                assert indexes(shown["shown"]) == list(range(first, 31)), "everything after the gap, once"
                assert shown["gapShown"], "the gap notice is visible"
                assert f"{first - 1} event(s)" in shown["gapText"]
                assert f"event {first}" in shown["gapText"]
                assert shown["markers"] == [f"[{first - 1} missed]"], "the hole is marked in the answer"
                image = await screenshot(page, "6-gap", tmp_path)
                assert close_to(await colour_of(page, image, "gap"), YELLOW)
                assert close_to(await colour_of(page, image, "status"), GREEN)

                await reload(page)
                await page.wait_for("document.getElementById('status').dataset.end === 'done'")
                again = await state(page)
                assert again["shown"] == shown["shown"]
                assert again["markers"] == shown["markers"]
                assert again["gapShown"]


HOSTILE = ['<img src=x onerror="window.__xss = 1">', "<script>window.__xss = 2</script>", " & <b>bold</b>"]


async def hostile(ctx: RunContext) -> dict[str, Any]:
    for i, text in enumerate(HOSTILE, 1):
        await ctx.emit("token", {"i": i, "text": text})
    return {"text": "".join(HOSTILE)}


async def test_streamed_markup_is_shown_as_text(tmp_path: Path) -> None:
    app = create_app()
    app.extensions["trio_streams"].register("hostile", hostile)
    with trio.fail_after(HANG):
        async with running_server(app) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                run_id = (await client.post("/v1/runs", json={"producer": "hostile"})).json()["run_id"]
            async with (
                open_browser(tmp_path / "profile") as browser,
                browser.tab(f"{server.url}/?run={run_id}") as page,
            ):
                await prepare(page)
                assert await page.wait_for("document.getElementById('status').dataset.end") == "done"
                shown = await state(page)
                assert [text for _, text in shown["shown"]] == HOSTILE
                assert await page.eval("document.getElementById('answer').textContent") == "".join(HOSTILE)
                assert (
                    await page.eval(
                        "document.querySelectorAll('#answer img, #answer script, #answer b').length"
                    )
                    == 0
                )
                assert await page.eval("window.__xss === undefined")


async def test_serve_app_serves_the_page_and_a_chat_run_ends_done(tmp_path: Path) -> None:
    # The README's command, as a real process: the page at /, the app's `chat` producer.
    process = await trio.lowlevel.open_process(
        [*SERVE, "--app", "examples.chat_app:create_app", "--bind=127.0.0.1:0", "--log-level=warning"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(HANG):
            out = b""
            while b"serving on " not in out or not out.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, f"serve exited before it served: {out.decode(errors='replace')}"
                out += chunk
            url = out.decode().split("serving on ", 1)[1].split()[0]
            async with (
                open_browser(tmp_path / "profile") as browser,
                browser.tab(f"{url}/") as page,
            ):
                await prepare(page)
                # Accessible: every field has a label; the status is announced.
                unlabelled = "[...document.querySelectorAll('input, select')].filter(e => !e.labels.length)"
                assert await page.eval(f"{unlabelled}.map(e => e.id)") == []
                assert (
                    await page.eval("document.getElementById('status').getAttribute('aria-live')") == "polite"
                )
                await page.eval(
                    "document.getElementById('rate').value = '200'; document.getElementById('start').click()"
                )
                assert await page.wait_for("document.getElementById('status').dataset.end") == "done"
                shown = await state(page)
                image = await screenshot(page, "7-chat-done", tmp_path)
                assert close_to(await colour_of(page, image, "status"), GREEN)
        words = ANSWER.split(" ")
        assert indexes(shown["shown"]) == list(range(1, len(words) + 1))
        assert json.loads(shown["result"])["text"] == "".join(t for _, t in shown["shown"])
        assert shown["producer"] == "chat"
        assert shown["gapShown"] is False
    finally:
        process.kill()
        with trio.move_on_after(10, shield=True):
            await process.wait()


FILL_STORAGE = """(() => {
  // Fill to the last byte: chunks of 1 MiB, then ever smaller ones.
  let n = 0;
  for (let size = 1 << 20; size >= 1; size >>= 1) {
    const chunk = 'x'.repeat(size);
    try { for (;;) { sessionStorage.setItem('filler' + n, chunk); n += 1; } } catch {}
  }
  return n;
})()"""


async def test_over_the_storage_quota_a_reload_resumes_from_the_last_record_saved(tmp_path: Path) -> None:
    app = create_app()
    app.extensions["trio_streams"].register("hostile", hostile)
    with trio.fail_after(HANG):
        async with running_server(app) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                run_id = (await client.post("/v1/runs", json={"producer": "hostile"})).json()["run_id"]
            async with (
                open_browser(tmp_path / "profile") as browser,
                browser.tab(f"{server.url}/") as page,
            ):
                await prepare(page)
                assert await page.eval(FILL_STORAGE) > 0, "sessionStorage is full now"
                await reload(page, f"{server.url}/?run={run_id}")  # the same tab: the same sessionStorage
                await page.wait_for("document.getElementById('status').dataset.end === 'done'")
                await page.wait_for("!document.getElementById('problem').hidden")
                assert "no longer fits" in await page.eval("document.getElementById('problem').textContent")
                await reload(page)
                await page.wait_for("document.getElementById('status').dataset.end === 'done'")
                again = await state(page)
                assert again["resumedAfter"] == 0, "nothing was saved: the reload replays from the start"
                assert [text for _, text in again["shown"]] == HOSTILE
