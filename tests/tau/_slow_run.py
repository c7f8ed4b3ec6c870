"""A run slowed down on purpose (each participant turn sleeps), for the kill -9 test: it runs in its own process
and is killed while simulations are in flight. Usage: python _slow_run.py TAU2_DATA RESULTS_JSON"""

from __future__ import annotations

import asyncio
import sys

from keye_agent.tau import OracleAgent, OracleUser, RunSettings, load_domain, run_tasks


class Slow:
    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.name, self.context_window = inner.name, inner.context_window

    async def agenerate(self, messages, tools, settings):
        await asyncio.sleep(self.delay)
        return await self.inner.agenerate(messages, tools, settings)

    async def astream(self, messages, tools, settings):
        async for chunk in self.inner.astream(messages, tools, settings):
            yield chunk

    def count_tokens(self, messages, tools=None):
        return self.inner.count_tokens(messages, tools)


if __name__ == "__main__":
    domain = load_domain("mock", tau2_data=sys.argv[1])
    asyncio.run(run_tasks(domain, domain.tasks, lambda t, k: Slow(OracleAgent(t), 0.05),
                          lambda t, k: Slow(OracleUser(t), 0.05),
                          RunSettings(num_trials=3, max_concurrency=2, save_to=sys.argv[2])))
