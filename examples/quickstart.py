"""The README's library example: a run that outlives its reader, replayed and followed."""

import trio

from trio_streams import RunContext, open_hub


async def chat(ctx: RunContext) -> str:
    text = ""
    for word in ["Hello", " from", " a", " detached", " run"]:
        await ctx.emit("token", word)
        text += word
        ctx.result = text  # saved as the partial result if the run is cancelled
        await trio.sleep(0.05)
    return text


async def main() -> None:
    async with open_hub() as hub:  # owns every run's task; leaving it finalizes them
        run = await hub.start(chat, key="conversation-1")
        async with hub.subscribe(run.id, after=0) as events:  # replay, then live
            async for event in events:
                print(event.seq, event.type, event.data)
        info = await hub.wait(run.id)
        print(info.status, repr(info.result))


if __name__ == "__main__":
    trio.run(main)
