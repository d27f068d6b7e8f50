import asyncio, json, sys, time
from hyperscale.logging import Logger, Entry, LogLevel
from hyperscale.logging.config.logging_config import LoggingConfig
import os

async def run(path, tasks, secs, text):
    LoggingConfig().update(log_directory=os.path.dirname(os.path.abspath(path)))
    logger = Logger()
    state = {"stop": False}
    counts = [0] * tasks
    async with logger.context(name="bench", path=path) as ctx:
        async def producer(i):
            n = 0
            while not state["stop"]:
                await ctx.log(Entry(message=text, level=LogLevel.INFO))
                n += 1
            counts[i] = n
        t0 = time.perf_counter()
        ts = [asyncio.create_task(producer(i)) for i in range(tasks)]
        await asyncio.sleep(secs)
        state["stop"] = True
        await asyncio.gather(*ts)
        el = time.perf_counter() - t0
    return sum(counts), el

path, tasks, secs, text = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
n, el = asyncio.run(run(path, tasks, secs, text))
print(json.dumps({"tasks": tasks, "entries": n, "secs": el}))
