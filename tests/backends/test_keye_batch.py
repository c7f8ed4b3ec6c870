"""KeyeBackend with ``max_batch`` > 1: concurrent callers are batched by model.batch.BatchEngine, and each gets
what it gets from the one-at-a-time backend (greedy, fp32, tiny preset, random weights, the tests' tokenizer):
plain text, xgrammar-constrained tool calls, streams and stop strings, cancellation. Nothing is faked."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from keye_fixtures import build_tokenizer, load_tokenizer
from PIL import Image

from keye_agent.backends import load_model
from keye_agent.backends.keye import KeyeBackend
from keye_agent.errors import ConfigError
from keye_agent.model import KeyeConfig, build_model
from keye_agent.types import GenerationSettings, ImagePart, Message, TextPart

LOOKUP = {"type": "function", "function": {
    "name": "lookup", "description": "Look up the weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                   "required": ["city"], "additionalProperties": False}}}
SYSTEM = "You are a helpful assistant. Look things up before you answer."


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("keye_tok"))


@pytest.fixture(scope="module", params=[False, True], ids=["dense", "dsa"])
def tiny_model(request):
    config = KeyeConfig.from_name("tiny").replace(sa_config={"topk": 16})  # selections drop keys at these lengths
    model = build_model(config, device="cpu", dtype=torch.float32, seed=7)
    model.set_sparse(request.param)
    return model


def conversations() -> list[list[Message]]:
    asks = ["What is the weather in Paris today?", "And in Rome?", "Grüße aus Köln", "def add(a, b):",
            "The answer is 42.", "Tell me about Rome, then Paris."]
    return [[Message.system(SYSTEM), Message.user(a)] for a in asks]


def test_concurrent_astream_equals_sequential(tiny_model, tok_dir):
    tok = load_tokenizer(tok_dir)
    alone = KeyeBackend("tiny", model=tiny_model, tokenizer=tok)
    batched = KeyeBackend("tiny", model=tiny_model, tokenizer=tok, max_batch=4, page_size=8)
    convs = conversations()
    plain = GenerationSettings(max_tokens=14, temperature=0.0)
    calls = GenerationSettings(max_tokens=40, temperature=0.0, tool_choice="required")
    stops = GenerationSettings(max_tokens=20, temperature=0.0, stop=["e"])
    jobs = [(c, None, plain) for c in convs] + [(c, [LOOKUP], calls) for c in convs[:3]] + [(convs[4], None, stops)]

    async def one(backend, c, t, s):
        text = []
        async for chunk in backend.astream(c, t, s):
            if chunk.kind == "text":
                text.append(chunk.text)
            elif chunk.kind == "done":
                return "".join(text), chunk.turn

    async def one_by_one():
        return [await one(alone, c, t, s) for c, t, s in jobs]

    async def together():
        return await asyncio.gather(*(one(batched, c, t, s) for c, t, s in jobs))

    want, got = asyncio.run(one_by_one()), asyncio.run(together())
    assert [turn.raw for _, turn in got] == [turn.raw for _, turn in want]
    assert [text for text, _ in got] == [text for text, _ in want]  # the streamed deltas, joined
    assert [t.tool_calls for _, t in got] == [t.tool_calls for _, t in want]
    assert all(t.tool_calls for _, t in want[6:9])  # the grammar forced a call in each
    assert [t.finish_reason for _, t in got] == [t.finish_reason for _, t in want]
    engine = batched.engine
    assert engine is not None and engine.stats.max_running > 1 and engine.pool.used == 0
    assert engine.stats.reused > 0  # siblings share the system prompt's pages
    engine.close()


def test_a_caller_that_stops_listening_frees_its_pages(tiny_model, tok_dir):
    backend = KeyeBackend("tiny", model=tiny_model, tokenizer=load_tokenizer(tok_dir), max_batch=2, page_size=8)
    settings = GenerationSettings(max_tokens=500, temperature=0.0)

    async def first_delta():
        stream = backend.astream(conversations()[0], None, settings)
        async for chunk in stream:
            if chunk.kind == "text":
                break
        await stream.aclose()

    asyncio.run(first_delta())
    engine = backend.engine
    assert engine is not None
    for _ in range(200):  # the scheduler drops the sequence at its next step
        if engine.pool.used == 0 and engine.running == 0:
            break
        time.sleep(0.01)
    assert engine.pool.used == 0 and engine.running == 0
    turn = backend.generate(conversations()[1], None, GenerationSettings(max_tokens=5, temperature=0.0))
    assert turn.usage.completion_tokens > 0
    engine.close()


def test_max_batch_through_load_model_and_bad_values(tok_dir):
    b = load_model("keye:tiny", random_weights=True, max_batch=4, tokenizer=load_tokenizer(tok_dir))
    assert isinstance(b, KeyeBackend) and b.engine is not None and b.engine.max_batch == 4
    b.engine.close()
    assert load_model("keye:tiny", random_weights=True, tokenizer=load_tokenizer(tok_dir)).engine is None
    with pytest.raises(ConfigError, match="max_batch"):
        load_model("keye:tiny", random_weights=True, max_batch=0, tokenizer=load_tokenizer(tok_dir))


def test_readme_batched_serving_example_runs_as_written():
    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if "max_batch=8" in b]
    proc = subprocess.run([sys.executable, "-c", block], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "4 answers; the follow-up reused its prefix: True"


def test_images_beside_batched_text(tok_dir):
    """A prompt with an image takes the one-at-a-time path (pausing the batch), concurrent text prompts the engine;
    each gets what it gets from the one-at-a-time backend."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)).save(buf, "PNG")
    image = Message.user([ImagePart(data=base64.b64encode(buf.getvalue()).decode()), TextPart(text="What is it?")])
    tok = load_tokenizer(tok_dir)
    alone = KeyeBackend("tiny-vl", random_weights=True, device="cpu", tokenizer=tok)
    batched = KeyeBackend("tiny-vl", random_weights=True, device="cpu", tokenizer=tok, max_batch=4, page_size=8)
    jobs = [[Message.system(SYSTEM), image]] + conversations()[:3]
    settings = GenerationSettings(max_tokens=8, temperature=0.0)
    want = [alone.generate(c, None, settings).raw for c in jobs]

    async def together():
        return await asyncio.gather(*(batched.agenerate(c, None, settings) for c in jobs))

    assert [t.raw for t in asyncio.run(together())] == want
    assert batched.engine is not None and batched.engine.stats.steps > 0
    batched.engine.close()
