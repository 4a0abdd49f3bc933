"""An owner process for the dead-owner test: ``python -m tests.redis_owner URL PREFIX LEASE``.

Starts one endless run on a RedisStore, prints its id, and emits until killed.
"""

from __future__ import annotations

import sys

import trio

from trio_streams import open_hub
from trio_streams.log.redis import RedisStore


async def main(url: str, prefix: str, lease: float) -> None:
    store = RedisStore(url, prefix=prefix, lease_ttl=lease)

    async def endless(ctx):
        n = 0
        while True:
            n += 1
            ctx.result = {"tokens": n}
            await ctx.emit("token", n)
            await trio.sleep(0.005)

    async with open_hub(store) as hub:
        run = await hub.start(endless, key="endless", owner="owner")
        print(run.id, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]))
