"""KeyeBackend on the tiny preset (real model code, fp32 random weights, CPU) with a tokenizer the tests train
(tests/backends/keye_fixtures.py): the agent loop end to end with xgrammar-constrained calls, prefix reuse against
cold runs, concurrent callers, streaming, stop strings, exact token counts, a checkpoint directory in the real layout
through ``keye-agent run --model PATH``, and the errors a user can hit. No part is faked."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Literal

import pytest
import torch
from keye_fixtures import build_tokenizer, load_tokenizer, write_checkpoint

from keye_agent.backends._keye_decode import PrefixCache, decode
from keye_agent.backends.keye import KeyeBackend
from keye_agent.errors import ConfigError, ContextWindowError
from keye_agent.model import KeyeConfig, build_model
from keye_agent.model.sampling import SamplingParams
from keye_agent.types import GenerationSettings, ImagePart, Message, TextPart, ToolCall

LOOKUP = {"type": "function", "function": {
    "name": "lookup", "description": "Look up the weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                   "required": ["city"], "additionalProperties": False}}}
RESULTS = ["Paris: sunny, 21 degrees.", "Rome: rainy, 17 degrees, wind from the west at 20 km/h.",
           "No more data for this city."]


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One torch thread: these tiny shapes gain nothing from more, and on a shared CPU the thread pool's
    contention made them several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("keye_tok"))


@pytest.fixture(scope="module")
def tiny_model():
    return build_model("tiny", device="cpu", dtype=torch.float32, seed=7)


def make_backend(model, tok_dir, **kw) -> KeyeBackend:
    return KeyeBackend("tiny", model=model, tokenizer=load_tokenizer(tok_dir), **kw)


def conversation() -> list[Message]:
    return [Message.system("You are a helpful assistant. Look things up before you answer."),
            Message.user("What is the weather in Paris today? And in Rome?")]


def greedy(n: int, **kw) -> GenerationSettings:
    return GenerationSettings(max_tokens=n, temperature=0.0, **kw)


def test_agent_loop_end_to_end_with_constrained_tool_calls(tiny_model, tok_dir):
    """tool_choice "required" with random weights: every call the model writes validates by construction, runs,
    and its result goes back; the second step reuses the first step's KV prefix."""
    from keye_agent.agent import Agent
    from keye_agent.tools import tool

    cities: list[str] = []

    @tool
    def lookup(city: Literal["Paris", "Rome"]) -> str:
        """Look up the weather of a city.

        Args:
            city: The city.
        """
        cities.append(city)
        return f"{city}: sunny, 21 degrees."

    backend = make_backend(tiny_model, tok_dir, parallel_tool_calls=False)
    agent = Agent(backend, [lookup], instructions="Look things up before you answer.", max_steps=2,
                  final_answer_tool=False, settings=greedy(160, tool_choice="required"))
    reused: list[int] = []
    orig = backend._generate

    def spy(*a, **k):
        turn = orig(*a, **k)
        reused.append(backend.last_result.reused_tokens)
        return turn

    backend._generate = spy
    result = agent.run("What is the weather in Paris?")
    assert result.status == "max_steps" and result.steps == 2
    for step in result.trajectory.steps:
        assert step.turn is not None and not step.turn.parse_errors
        assert len(step.turn.tool_calls) == 1 and step.turn.tool_calls[0].name == "lookup"
        assert step.turn.tool_calls[0].arguments["city"] in ("Paris", "Rome")
        assert [r.ok for r in step.tool_results] == [True]
        assert step.turn.usage.prompt_tokens > 0 and step.turn.usage.completion_tokens > 0
    assert len(cities) >= 1  # identical read-only calls may be served once by the loop
    assert reused[0] == 0 and reused[1] > result.trajectory.steps[0].turn.usage.prompt_tokens // 2


def run_conversation(backend: KeyeBackend, steps: int, n: int = 8) -> tuple[list[list[int]], list[int]]:
    """A planner conversation: each step the model answers (greedy), then a scripted call and result go back."""
    msgs = conversation()
    tokens, reused = [], []
    for i in range(steps):
        turn = backend.generate(msgs, [LOOKUP], greedy(n))
        tokens.append(list(backend.last_result.token_ids))
        reused.append(backend.last_result.reused_tokens)
        call = ToolCall(id=f"call_{i}", name="lookup", arguments={"city": ["Paris", "Rome"][i % 2]})
        msgs += [Message.assistant(turn.raw, [call]), Message.tool(call.id, "lookup", RESULTS[i % 3])]
    return tokens, reused


@pytest.mark.parametrize("topk", [2048, 24])
def test_prefix_reuse_gives_the_same_tokens_as_cold_runs(tok_dir, topk):
    """Greedy tokens with the kept prefix equal those of a cold prefill at every step, dense-equivalent DSA (top-k
    above the prompt) and DSA that really selects (top-k 24: the index keys of the prefix are reused too)."""
    config = KeyeConfig.from_name("tiny").replace(sa_config={"topk": topk})
    model = build_model(config, device="cpu", dtype=torch.float32, seed=3)
    assert model.sparse
    warm_tokens, warm_reused = run_conversation(make_backend(model, tok_dir, constrained=False), 3)
    cold_tokens, cold_reused = run_conversation(make_backend(model, tok_dir, constrained=False, prefix_reuse=False), 3)
    assert warm_tokens == cold_tokens
    assert cold_reused == [0, 0, 0]
    assert warm_reused[0] == 0 and all(r > 100 for r in warm_reused[1:])


def test_cache_slots_keep_several_conversations(tiny_model, tok_dir):
    """Two conversations taking turns on one backend: with two slots each call continues its own conversation's
    cache (and gives the tokens of a cold run); with one slot they evict each other down to the shared prefix."""
    def alternate(backend: KeyeBackend) -> tuple[list[list[int]], list[int]]:
        convs = [conversation(), [Message.system("You are a helpful assistant."), Message.user("Rome?")]]
        tokens, reused = [], []
        for i in range(4):
            msgs = convs[i % 2]
            turn = backend.generate(msgs, [LOOKUP], greedy(6))
            tokens.append(list(backend.last_result.token_ids))
            reused.append(backend.last_result.reused_tokens)
            call = ToolCall(id=f"call_{i}", name="lookup", arguments={"city": "Paris"})
            msgs += [Message.assistant(turn.raw, [call]), Message.tool(call.id, "lookup", RESULTS[i % 3])]
        return tokens, reused

    two_tokens, two_reused = alternate(make_backend(tiny_model, tok_dir, constrained=False, cache_slots=2))
    one_tokens, one_reused = alternate(make_backend(tiny_model, tok_dir, constrained=False))
    cold_tokens, _ = alternate(make_backend(tiny_model, tok_dir, constrained=False, prefix_reuse=False))
    assert two_tokens == cold_tokens == one_tokens
    # calls 3 and 4 continue calls 1 and 2: their whole earlier prompt is reused with two slots
    assert two_reused[2] > one_reused[2] and two_reused[3] > one_reused[3]


def test_prefix_cache_grows_and_keeps_the_prefix(tiny_model):
    """A cache that starts small doubles and copies the kept prefix (K, V, index keys); tokens match cold runs."""
    rng = torch.Generator().manual_seed(0)
    first = torch.randint(3, 600, (40,), generator=rng).tolist()
    second = first + torch.randint(3, 600, (150,), generator=rng).tolist()
    params = SamplingParams()
    warm = PrefixCache(tiny_model, limit=4096, min_capacity=16)
    cold = PrefixCache(tiny_model, limit=4096, min_capacity=16)
    with torch.inference_mode():
        a = decode(warm, first, 8, params, [], valid_vocab=2048)
        b = decode(warm, second, 8, params, [], valid_vocab=2048)
        cold_b = decode(cold, second, 8, params, [], valid_vocab=2048, reuse=False)
    assert a.reused_tokens == 0 and b.reused_tokens == 40 and cold_b.reused_tokens == 0
    assert b.token_ids == cold_b.token_ids
    assert warm.cache.max_seq_len >= len(second) + 8 and len(warm.ids) == warm.cache.length



@pytest.mark.parametrize("sparse", [False, True])
def test_decode_graph_gives_the_same_tokens_with_prefix_reuse(tok_dir, sparse):
    """decode_graph=True (on the CPU DecodeGraph runs its fixed-shape step eagerly, what CUDA captures): the greedy
    tokens and reused prefixes of a three-step conversation equal those of the regular step, dense and DSA that
    really selects (top-k 24); one graph serves every call on the kept cache. CPU default: off."""
    config = KeyeConfig.from_name("tiny").replace(sa_config={"topk": 24})
    model = build_model(config, device="cpu", dtype=torch.float32, seed=3)
    assert make_backend(model, tok_dir).decode_graph is False
    graph = make_backend(model, tok_dir, constrained=False, sparse=sparse, decode_graph=True)
    got = run_conversation(graph, 3)
    want = run_conversation(make_backend(model, tok_dir, constrained=False, sparse=sparse, decode_graph=False), 3)
    assert got == want
    assert got[1][0] == 0 and all(r > 100 for r in got[1][1:])
    pc = graph._caches[0]
    assert pc.graph_builds == 1 and pc.graph_steps >= sum(len(t) - 1 for t in got[0]) > 0


@pytest.mark.parametrize("sparse", [False, True])
def test_decode_graph_is_rebuilt_when_the_cache_grows(sparse):
    """A cache that starts at 16 tokens is reallocated (prefix copied) on the second call: its graph is built again
    for the new buffers, and the tokens equal those of the regular step; a call that fits keeps the graph."""
    config = KeyeConfig.from_name("tiny").replace(sa_config={"topk": 24})
    model = build_model(config, device="cpu", dtype=torch.float32, seed=5)
    model.set_sparse(sparse)
    rng = torch.Generator().manual_seed(1)
    first = torch.randint(3, 600, (40,), generator=rng).tolist()
    second = first + torch.randint(3, 600, (38,), generator=rng).tolist()  # 86 tokens with the answer: grows to 96
    third = second[:60] + torch.randint(3, 600, (10,), generator=rng).tolist()  # fits in 96
    runs = {}
    for flag in (True, False):
        pc = PrefixCache(model, limit=4096, min_capacity=16, decode_graph=flag)
        with torch.inference_mode():
            out = [decode(pc, p, 8, SamplingParams(), [], valid_vocab=2048) for p in (first, second, third)]
        runs[flag] = [(r.token_ids, r.reused_tokens) for r in out]
        if flag:
            assert pc.cache.max_seq_len == 96 and pc.graph_builds == 2 and pc.graph_steps == 3 * 7
            assert pc._graphs[sparse].cache is pc.cache
        else:
            assert pc.graph_builds == pc.graph_steps == 0
    assert runs[True] == runs[False]
    assert [r for _, r in runs[True]] == [0, 40, 60]


def test_decode_graph_keeps_constrained_calls_and_stop_strings(tiny_model, tok_dir):
    """Grammar masking applies to the graph step's logits and stop strings cut as before: the same turns as with
    the regular step (a required tool call, free text, and that text cut at a stop string)."""
    turns = {}
    for flag in (False, True):
        backend = make_backend(tiny_model, tok_dir, decode_graph=flag, parallel_tool_calls=False)
        call = backend.generate(conversation(), [LOOKUP], greedy(160, tool_choice="required"))
        free = backend.generate(conversation(), None, greedy(30))
        cut = backend.generate(conversation(), None, greedy(30, stop=[free.raw[5:8]]))
        assert [c.name for c in call.tool_calls] == ["lookup"] and not call.parse_errors
        assert cut.finish_reason == "stop" and len(cut.raw) < len(free.raw)
        assert (backend._caches[0].graph_steps > 0) == flag
        turns[flag] = [(t.raw, t.finish_reason, [(c.name, c.arguments) for c in t.tool_calls]) for t in (call, free, cut)]
    assert turns[True] == turns[False]

def test_concurrent_callers_are_served_one_at_a_time(tiny_model, tok_dir):
    """Tasks of one loop and plain threads at once: the model never runs two passes together, each caller gets
    exactly what it gets alone, and the event loop keeps running while the model works."""
    backend = make_backend(tiny_model, tok_dir)
    convs = [conversation(), [Message.user("Say something about Rome.")], [Message.user("Grüße aus Köln")]]
    settings = greedy(16)
    alone = [make_backend(tiny_model, tok_dir, prefix_reuse=False).generate(c, [LOOKUP], settings).raw
             for c in convs]

    active, peak = 0, 0
    guard = threading.Lock()
    forward = tiny_model.forward

    def counting_forward(*a, **k):
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        try:
            return forward(*a, **k)
        finally:
            with guard:
                active -= 1

    tiny_model.forward = counting_forward
    try:
        async def together():
            ticks = 0
            done = asyncio.Event()

            async def ticker():
                nonlocal ticks
                while not done.is_set():
                    ticks += 1
                    await asyncio.sleep(0.001)

            t = asyncio.create_task(ticker())
            turns = await asyncio.gather(*(backend.agenerate(c, [LOOKUP], settings) for c in convs + convs))
            done.set()
            await t
            return [x.raw for x in turns], ticks

        raws, ticks = asyncio.run(together())
        assert raws == alone + alone
        assert ticks > 3  # the loop ran between tokens: generation is off the loop thread

        out: dict[int, str] = {}
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, backend.generate(convs[i], [LOOKUP],
                                                                                            settings).raw))
                   for i in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert [out[i] for i in range(3)] == alone
    finally:
        del tiny_model.forward
    assert peak == 1


def test_stream_deltas_add_up_to_the_turn_and_stop_strings_cut(tiny_model, tok_dir):
    backend = make_backend(tiny_model, tok_dir)

    async def collect(settings):
        chunks = [c async for c in backend.astream(conversation(), None, settings)]
        return chunks

    chunks = asyncio.run(collect(greedy(30)))
    turn = chunks[-1].turn
    assert chunks[-1].kind == "done" and turn.finish_reason == "length"
    assert "".join(c.text for c in chunks if c.kind == "text") == turn.text == turn.raw
    assert turn.usage.completion_tokens == 30
    stop = turn.raw[5:8]
    assert stop.strip()
    cut = backend.generate(conversation(), None, greedy(30, stop=[stop]))
    assert cut.raw == turn.raw[: turn.raw.index(stop)] and cut.finish_reason == "stop"


def test_named_tool_choice_and_thinking_prompt(tiny_model, tok_dir):
    backend = make_backend(tiny_model, tok_dir)
    turn = backend.generate(conversation(), [LOOKUP], greedy(120, tool_choice="lookup"))
    assert [c.name for c in turn.tool_calls] == ["lookup"] and turn.finish_reason == "tool_calls"
    assert backend.render(conversation(), None, GenerationSettings(enable_thinking=False)).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_cancelled_stream_stops_the_worker(tiny_model, tok_dir):
    backend = make_backend(tiny_model, tok_dir)
    backend.stop_ids = []  # only the cancel can end this generation early

    async def first_chunk_then_close():
        stream = backend.astream(conversation(), None, greedy(4000))
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(first_chunk_then_close())
    backend.reset_cache()  # takes the lock: returns once the worker has stopped
    assert backend.last_result.finish_reason == "cancelled" and len(backend.last_result.token_ids) < 4000


def test_count_tokens_is_exact(tiny_model, tok_dir):
    backend = make_backend(tiny_model, tok_dir)
    msgs = conversation() + [Message.assistant("Let me check.", [ToolCall(id="c", name="lookup",
                                                                           arguments={"city": "Paris"})]),
                             Message.tool("c", "lookup", RESULTS[0])]
    turn = backend.generate(msgs, [LOOKUP], greedy(1))
    header = len(backend.tokenizer.encode("<|im_start|>assistant\n"))
    assert backend.count_tokens(msgs, [LOOKUP]) + header == turn.usage.prompt_tokens
    tools_only = backend.count_tokens([], [LOOKUP])
    assert tools_only > 20 and backend.count_tokens([]) == 0
    # one message at a time (how the agent counts): exact for each turn rendered alone
    single = backend.count_tokens([msgs[1]])
    assert single == len(backend.tokenizer.encode(f"<|im_start|>user\n{msgs[1].text}<|im_end|>\n"))


def test_a_shipped_chat_template_renders_the_prompt(tiny_model, tok_dir, tmp_path):
    """A checkpoint's own Jinja template drives the prompt; a piece it refuses to render alone (no user query)
    is still counted, in the Qwen3 format."""
    import shutil

    root = tmp_path / "tok_with_template"
    shutil.copytree(tok_dir, root)
    template = ("{%- if not (messages | selectattr('role', 'equalto', 'user') | list) %}"
                "{{ raise_exception('No user query found in messages.') }}{%- endif %}"
                "{%- for m in messages %}<|im_start|>{{ m.role }}\n[T] {{ m.content }}<|im_end|>\n{%- endfor %}"
                "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")
    cfg = json.loads((root / "tokenizer_config.json").read_text())
    (root / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": template}))
    backend = KeyeBackend("tiny", model=tiny_model, tokenizer=root)
    assert backend.render(conversation()).startswith("<|im_start|>system\n[T] You are")
    turn = backend.generate(conversation(), None, greedy(4))
    assert turn.usage.prompt_tokens == len(backend.tokenizer.encode(backend.render(conversation())))
    tool_msg = Message.tool("c", "lookup", RESULTS[0])
    expected = f"<|im_start|>user\n<tool_response>\n{RESULTS[0]}\n</tool_response><|im_end|>\n"
    assert backend.count_tokens([tool_msg]) == len(backend.tokenizer.encode(expected))


def test_checkpoint_directory_runs_the_agent_through_the_cli(tiny_model, tok_dir, tmp_path):
    """A checkpoint in the real layout, loaded by the real loader, gives the tokens of the model it came from; then
    `keye-agent run --model DIR` runs the agent on it with constrained calls and saves the trajectory."""
    from typer.testing import CliRunner

    from keye_agent.cli.main import app
    from keye_agent.types import Trajectory

    ckpt = write_checkpoint(tiny_model, tmp_path / "Keye-VL-2.0-tiny", tok_dir)
    loaded = KeyeBackend(ckpt, device="cpu", dtype=torch.float32)
    assert loaded.name == "keye:Keye-VL-2.0-tiny" and loaded.tokenizer.vocab_size == load_tokenizer(tok_dir).vocab_size
    bf16_model = build_model("tiny", device="cpu", dtype=torch.float32, random_weights=False)
    with torch.no_grad():  # the model as stored: bf16-rounded weights
        for (_, p), (_, q) in zip(bf16_model.named_parameters(), tiny_model.named_parameters(), strict=True):
            p.copy_(q.to(torch.bfloat16).float())
    expected = make_backend(bf16_model, tok_dir).generate(conversation(), None, greedy(16)).raw
    assert loaded.generate(conversation(), None, greedy(16)).raw == expected

    tools = tmp_path / "weather_tools.py"
    tools.write_text(
        "from typing import Literal\nfrom keye_agent.tools import tool\n\n@tool\n"
        "def lookup(city: Literal['Paris', 'Rome']) -> str:\n    \"\"\"Look up the weather of a city.\n\n"
        "    Args:\n        city: The city.\n    \"\"\"\n    return city + ': sunny'\n", encoding="utf-8")
    saved = tmp_path / "run.jsonl"
    res = CliRunner().invoke(app, ["run", "Weather in Paris?", "--model", str(ckpt), "--tools", str(tools),
                                   "--tool-choice", "lookup", "--max-steps", "2", "--max-tokens", "120",
                                   "--json", "--save", str(saved)])
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["model"] == "keye:Keye-VL-2.0-tiny" and payload["status"] == "max_steps", res.output
    traj = Trajectory.load(saved)
    calls = [c for s in traj.steps for c in (s.turn.tool_calls if s.turn else [])]
    assert len(calls) == 2 and all(c.name == "lookup" for c in calls)
    assert all(r.ok for s in traj.steps for r in s.tool_results)


def test_resolve_model_routes_presets_and_checkpoints(tok_dir, monkeypatch):
    from keye_agent.cli.models import resolve_model

    monkeypatch.setenv("KEYE_TOKENIZER", str(tok_dir))
    backend = resolve_model("keye:tiny", random_weights=True, device="cpu")
    assert isinstance(backend, KeyeBackend) and backend.name == "keye:tiny"
    assert backend.tokenizer.vocab_size == load_tokenizer(tok_dir).vocab_size
    with pytest.raises(ConfigError, match="carries no weights"):
        resolve_model("keye:tiny")
    with pytest.raises(ConfigError, match="neither a checkpoint directory nor a Keye preset"):
        resolve_model("keye:tiny-typo", random_weights=True)


def test_preset_without_a_tokenizer_uses_the_stand_in(monkeypatch):
    monkeypatch.delenv("KEYE_TOKENIZER", raising=False)
    with pytest.warns(UserWarning, match="stand-in byte-level BPE"):
        backend = KeyeBackend("tiny", random_weights=True, device="cpu")
    for t in ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<think>", "</think>"):
        assert backend.tokenizer.encode(t) == [backend.tokenizer.token_to_id(t)]
    turn = backend.generate(conversation(), [LOOKUP], greedy(120, tool_choice="lookup"))
    assert [c.name for c in turn.tool_calls] == ["lookup"]


def test_errors_name_the_problem(tiny_model, tok_dir, tmp_path):
    backend = make_backend(tiny_model, tok_dir, context_window=64)
    with pytest.raises(ContextWindowError, match="context window is 64"):
        backend.generate(conversation(), [LOOKUP], greedy(4))
    image = Message.user([TextPart(text="What is this?"), ImagePart(url="http://example.com/a.png")])
    with pytest.raises(ConfigError, match="image or video"):
        backend.count_tokens([image])
    with pytest.raises(ConfigError, match="no config.json"):
        KeyeBackend(tmp_path)
    big = KeyeConfig.from_name("tiny").replace(vocab_size=300)
    with pytest.raises(ConfigError, match="different models"):
        KeyeBackend(model=build_model(big, device="cpu"), tokenizer=load_tokenizer(tok_dir))
    with pytest.raises(ConfigError, match="tool_choice names 'nope'"):
        backend_ok = make_backend(tiny_model, tok_dir)
        backend_ok.generate(conversation(), [LOOKUP], greedy(4, tool_choice="nope"))
    with pytest.raises(ConfigError, match="temperature"):
        make_backend(tiny_model, tok_dir).generate(conversation(), None, GenerationSettings(temperature=-1))
