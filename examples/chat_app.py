"""A Quart-Trio app with a fake-LLM producer and a page that streams its answer.

Run it:  trio-streams serve --app examples.chat_app:create_app
    or:  python examples/chat_app.py        (then open http://127.0.0.1:8000)

The page (chat_page.html) starts a run of ``chat`` or the built-in ``demo``,
shows tokens as they arrive with the run's status and metrics, keeps the run
in its URL (a reload resumes after the last event it showed; a second tab on
that link follows the same run), shows a notice for a ``gap``, and has a Stop
button: a stopped answer stays, and is the run's partial result. README, "The
example page".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from quart import Response
from quart_trio import QuartTrio

from trio_streams.web import TrioStreams

if TYPE_CHECKING:
    from trio_streams import RunContext

PAGE = Path(__file__).with_name("chat_page.html")
ANSWER = (
    "Runs outlive their requests: the answer keeps streaming into a replay log "
    "while you reload, and every reader resumes exactly where it left off. "
) * 4


#: The chat producer's input, declared once: validated on every start (a 400
#: naming the field) and shown in /openapi.json.
PROMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "pattern": "\\S", "description": "what to ask (not blank)"},
        "rate": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1000,
            "description": "tokens per second",
        },
    },
}


def parse_prompt(raw: Any) -> dict[str, Any]:
    """The valid input (``PROMPT_SCHEMA`` checked it) with its default rate filled in."""
    return {"prompt": raw["prompt"], "rate": float(raw.get("rate", 20))}


async def fake_llm(ctx: RunContext) -> dict[str, Any]:
    """Stream the canned answer word by word; on Stop, keep what was said.

    Each token carries ``ts``, the wall clock when it was emitted: the page
    shows how long it took to arrive.
    """
    spec: dict[str, Any] = ctx.input  # what parse_prompt returned
    words = ANSWER.split(" ")
    said: list[str] = []
    try:
        for i, word in enumerate(words, 1):
            await trio.sleep(1 / spec["rate"])
            token = word + " "
            await ctx.emit("token", {"i": i, "text": token, "ts": time.time()})
            said.append(token)
    except trio.Cancelled:
        # Synchronous: nothing to await, so no shielding needed.
        ctx.result = {"text": "".join(said), "prompt": spec["prompt"]}
        raise
    return {"text": "".join(said), "prompt": spec["prompt"]}


def create_app(**options: Any) -> QuartTrio:
    """The example app; ``options`` go to :class:`TrioStreams` (``serve`` passes its flags)."""
    app = QuartTrio(__name__)
    streams = TrioStreams(app, **options)
    streams.register(
        "chat",
        fake_llm,
        parse_input=parse_prompt,
        input_schema=PROMPT_SCHEMA,
    )

    @app.get("/")
    async def page() -> Response:
        return Response(PAGE.read_text(), content_type="text/html; charset=utf-8")

    return app


if __name__ == "__main__":
    from trio_streams.cli._main import main

    raise SystemExit(main(["serve", "--app", "examples.chat_app:create_app"]))
