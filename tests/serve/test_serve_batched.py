"""`keye-agent serve` over a batching Keye backend (``max_batch=8``, continuous batching): 8 concurrent greedy
requests from the async openai SDK get the answers the same 8 get one at a time, text and tool calls alike, and
the engine really ran them together. The server does nothing for batching: concurrent requests are concurrent
``astream`` calls."""

from __future__ import annotations

import asyncio
import warnings

import openai
import pytest
from serve_fixtures import MODEL, WEATHER, serving

SYSTEM = {"role": "system", "content": "You are the support agent of a small online store. Answer briefly."}
ASKS = ["Where is my order?", "Cancel order 42.", "Do you ship to Oslo?", "What is your refund policy?",
        "Weather in Paris?", "Weather in Rome?", "Is the shop open on Sunday?", "Thanks!"]


@pytest.fixture(scope="module")
def batched():
    from keye_agent.backends import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the preset's stand-in tokenizer says it is one
        backend = load_model("keye:tiny", random_weights=True, max_batch=8, device="cpu", page_size=16)
    yield backend
    backend.engine.close()


def _request(i: int) -> dict:
    body = {"model": MODEL, "messages": [SYSTEM, {"role": "user", "content": ASKS[i]}], "temperature": 0,
            "max_tokens": 12}
    if "Weather" in ASKS[i]:  # two of the eight must call the tool (the grammar holds them to its schema)
        body.update(tools=[WEATHER], tool_choice="required", max_tokens=40)
    return body


def _answer(r) -> tuple:
    m = r.choices[0].message
    return (m.content, [(c.function.name, c.function.arguments) for c in m.tool_calls or ()],
            r.choices[0].finish_reason, r.usage.completion_tokens)


def test_eight_concurrent_requests_equal_the_same_eight_one_at_a_time(batched):
    with serving(batched) as api:
        client = openai.OpenAI(base_url=api, api_key="unused", max_retries=0, timeout=300)
        alone = [_answer(client.chat.completions.create(**_request(i))) for i in range(8)]
        assert batched.engine.stats.max_running == 1

        async def together():
            async with openai.AsyncOpenAI(base_url=api, api_key="unused", max_retries=0, timeout=300) as c:
                return await asyncio.gather(*(c.chat.completions.create(**_request(i)) for i in range(8)))
        both = [_answer(r) for r in asyncio.run(together())]
    assert both == alone
    assert all(calls and calls[0][0] == "get_weather" for _, calls, _, _ in (alone[4], alone[5]))
    assert batched.engine.stats.max_running > 1  # they ran in one batch, not one after another


def test_a_client_that_leaves_mid_stream_frees_its_pages(batched):
    import time

    import httpx
    from serve_fixtures import wait_idle

    with serving(batched) as api:
        body = {**_request(0), "max_tokens": 4000, "stream": True}
        with httpx.Client(timeout=120) as c, c.stream("POST", api + "/chat/completions", json=body) as r:
            lines = r.iter_lines()
            assert [next(lines) for _ in range(6)][0].startswith("data: ")
            assert batched.engine.pool.used > 0
        assert wait_idle(api)["active"] == 0
        deadline = time.monotonic() + 60
        while batched.engine.pool.used and time.monotonic() < deadline:
            time.sleep(0.1)
        assert batched.engine.pool.used == 0
        # and the model is free for the next request at once
        r = httpx.post(api + "/chat/completions", json=_request(1), timeout=120)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 12
